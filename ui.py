"""Small UI helpers the pages share: database access, plain-words messages, and the plotly charts."""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import plotly.colors
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import sessionmaker

from core import i18n, words
from core.i18n import N_, _
from core.jobs import cost, estimate, queue, worker
from core.results import describe, tables
from core.store import db
from core.store.db import Dataset, Run, session_factory, utcnow
from core.store.settings import Settings, SettingsError, get_settings
from core.training import models
from core.training.config import METHOD_NAMES, PRESETS, TrainConfig, preset_config
from core.training.failures import TrainingError
from core.words import text_width

if TYPE_CHECKING:  # both bring torch: imported where a model is loaded, not on every page
    from core.jobs.explainer import Explainer
    from core.training.explain import Explanation
    from core.training.predict import Predictor

CURVES = {  # metric name -> (subplot column, line style, legend text)
    "train_loss": (1, "solid", N_("train loss")),
    "eval_loss": (1, "dash", N_("dev loss")),
    "eval_accuracy": (2, "solid", N_("dev accuracy")),
    "eval_f1_macro": (2, "dot", N_("dev macro-F1")),
}
X_AXES = {  # what the curves' x-axis counts -> its title (translated where shown: _(X_AXES[x]))
    "step": N_("Training step"),
    "epoch": N_("Epoch"),
    "examples": N_("Examples seen (steps × batch size)"),
}
# Shares in tables, shown as everywhere else ('73.7 %'): give the column words.in_percent(share) values.
PERCENT_COLUMN = st.column_config.NumberColumn(format="%.1f %%")


def blank_missing(frame, formats: dict[str, Callable[[float], str]]):
    """The table with each column of `formats` written by its function (core.words: in the reader's language) and
    a missing number as an empty cell: st.dataframe shows 'None' for a missing number, whatever its format."""
    frame = frame.copy()
    for column, write in formats.items():
        if column in frame.columns:
            frame[column] = [write(v) if v is not None and v == v else "" for v in frame[column]]  # NaN != NaN
    return frame


def fit_headers(frame, config: dict | None = None) -> dict:
    """Column settings under which no header is cut to 'es…': st.dataframe sizes a column by its values, so a
    column of short values under a longer header gets the header's width (about 7 px a character and the menu's)."""
    config = dict(config or {})
    for name in frame.columns:
        column = config.get(name, st.column_config.Column())
        shown = isinstance(column, dict) and (column.get("type_config") or {}).get("format")  # a time's 'HH:mm'
        values = [text_width(shown or str(v)) for v in frame[name].head(100) if v is not None and v == v]  # NaN != NaN
        if isinstance(column, dict) and not column.get("width") and text_width(str(name)) > max(values, default=0):
            config[name] = {**column, "width": 7 * text_width(str(name)) + 32}
    return config


def dataframe(frame, config: dict | None = None, **kwargs) -> None:
    """A table whose columns code names in English (core.results.tables), shown with its headers in the reader's
    language (tables.headers), `config` (column settings by English name) kept and no header cut; `kwargs` as
    st.dataframe's (key=...)."""
    shown = tables.headers(frame)
    config = {tables.header(name): column for name, column in (config or {}).items()}
    st.dataframe(shown, hide_index=True, column_config=fit_headers(shown, config), **kwargs)


def time_zone() -> str | None:
    """The browser's time zone (e.g. 'Asia/Shanghai'); None where it has not said (times then show in UTC)."""
    return st.context.timezone


def clock(at, with_date: bool = False) -> str:
    """A stored time on the viewer's clock ('22:00'; with its date as their language writes one), or in UTC saying
    so ('14:00 UTC')."""
    return words.clock_text(at, time_zone(), with_date)


def local_times(frame, with_date: dict[str, bool]) -> tuple:
    """A table's stored times on the viewer's clock, and those columns' settings, written as the reader's language
    writes times: `with_date` by column name without '(UTC)', e.g. {'created': True, 'expected end': False}."""
    zone = time_zone()
    frame = words.in_time_zone(frame, zone)
    known = words.time_zone(zone) is not None
    where = (
        _("Your browser's time ({zone}).", zone=zone) if known else _("UTC: the browser did not say its time zone.")
    )
    config = {
        name: st.column_config.DatetimeColumn(format=words.table_time_format(with_date[base]), help=where)
        for name in frame.columns
        if (base := str(name).removesuffix(words.UTC_MARK)) in with_date
    }
    return frame, config


def glossary(*terms: str) -> str:
    """The plain glossary lines of these terms, in the reader's language, for a help text or a caption."""
    return " ".join(_(describe.GLOSSARY[t]) for t in terms)


def _run_the_app_not_a_lone_page() -> None:
    """While no st.navigation has run since the server started, Streamlit serves a page's address (/runs?run=3,
    the first visit after a restart) by running that file of pages/ alone: no app.py, no navigation, no layout.
    Run app.py instead, which then draws the steps and opens that page."""
    try:  # Streamlit's internals (1.5x-1.6x): where they change, the first visit is merely plainer, never broken
        from streamlit.runtime.pages_manager import PagesManager
        from streamlit.runtime.scriptrunner import get_script_run_ctx
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", False) and get_script_run_ctx() is not None:
        PagesManager.uses_pages_directory = False
        st.rerun()


_run_the_app_not_a_lone_page()  # at the first import, in the first page run after a start


def unusable_setting(e: SettingsError) -> None:
    """Stop the page: a setting (LORALAB_DB_URL, ...) cannot be used; says what to change."""
    st.error(
        _(
            "The dashboard cannot start: {problem} The administrator should correct it and restart the dashboard.",
            problem=e,
        )
    )
    st.stop()


def speak() -> None:
    """Write this page in the visitor's language (core.i18n): the first line of every page. app.py chose it already
    for this run; a page run on its own (AppTest opens pages so) reads the same choice from the session."""
    i18n.set_language(i18n.visitor(st.session_state.get("app_language"), st.context.locale))


def settings() -> Settings:
    """The server's settings; a setting that cannot be used stops the page with what to change."""
    try:
        return get_settings()
    except SettingsError as e:
        unusable_setting(e)


def database_problem(e: Exception) -> str:
    """A database that cannot be reached, in plain words (the URL without its password)."""
    return _(
        "{problem} Nothing was lost: runs already queued or training go on once it is back. Reload this page in a "
        "moment, or ask the administrator to check the database server.",
        problem=db.database_problem(settings().db_url, e),
    )


def sessions(write: bool = False) -> sessionmaker:
    """Sessions for one unit of work. Reads (the default) never wait for the worker's writes.

    A database that cannot be reached stops the page with a plain message (app.py does the same for one that goes
    away later, while a page runs).
    """
    try:
        db.open_database(settings().db_url)  # connects, and migrates the first time this process opens it
        return session_factory(settings().db_url, read_only=not write)
    except (OperationalError, InterfaceError) as e:
        st.error(database_problem(e))
        st.stop()
    except SettingsError as e:  # a database it has no driver for, an SQLite file that cannot be created
        unusable_setting(e)


@st.cache_resource(show_spinner=False)
def _worker_starts() -> dict[str, float]:
    return {}  # database URL -> when this server last started a worker for it


def keep_worker_running(grace_s: float = 60.0) -> str:
    """Start the background worker if none serves this database: 'running', 'starting' or 'down'.

    A new worker needs several seconds to start and take its lock; no second one is started meanwhile.
    """
    current, starts = settings(), _worker_starts()
    if worker.worker_alive(current):
        return "running"
    last = starts.get(current.db_url)
    if last is not None and time.monotonic() - last < grace_s:
        return "starting"
    starts[current.db_url] = time.monotonic()
    try:
        worker.ensure_worker(current)
    except OSError:  # e.g. the data folder is not writable; the sidebar says so and names the log
        return "down"
    return "starting" if last is None else "down"


def problems(intro: str, items: list[str]) -> None:
    """One error box: what happened, then every problem on its own line."""
    st.error(intro + "\n" + "\n".join(f"- {p}" for p in items))


def query_ids(name: str) -> list[int] | None:
    """Run ids from the URL (?run=3 or ?runs=3,4); None when absent, [] when not ids a database can hold."""
    if name not in st.query_params:
        return None
    parts = st.query_params[name].replace(",", " ").split()
    ok = all(re.fullmatch(r"[0-9]{1,18}", p) for p in parts)  # ASCII digits only: "²".isdigit() is True
    return [int(p) for p in parts] if ok else []


def flash(kind: str, message: str) -> None:
    """A message to show on the next run of the page (a callback cannot draw on the page itself)."""
    st.session_state["_flash"] = (kind, message)


def show_flash() -> None:
    kind, message = st.session_state.pop("_flash", (None, None))
    if kind:
        getattr(st, kind)(message)


def demo_button(key: str) -> None:
    """The one-click way to a first dataset: store the bundled demo set."""
    from core.data import datasets, reading  # here: the CSV reader is the slowest import of a cold start

    if st.button(
        _("Use the demo set"), key=key, type="primary", help=_("Stores about 2,100 BBC News titles in 5 classes.")
    ):
        try:
            with sessions(write=True)() as s:
                datasets.add_demo_dataset(s, settings())
        except reading.DataError as e:
            return problems(_("The demo set could not be stored:"), e.problems)
        st.rerun()


@st.cache_resource(show_spinner=False)
def bundled_tokenizer():
    """For the 'texts longer than N tokens' warning when checking data; None if the model cannot be loaded."""
    try:
        return models.load_tokenizer(models.BUNDLED, settings())
    except (models.ModelSourceError, ImportError):
        return None


def predictor(db_url: str, run_id: int) -> Predictor:
    """One loaded model per run, kept between predictions and shared by every browser tab (Predict, Compare)."""
    with st.spinner(_("Loading the model (only the first time)…")):  # shown only if it takes half a second
        return _predictor(db_url, run_id)


@st.cache_resource(max_entries=8, show_spinner=False)
def _predictor(db_url: str, run_id: int) -> Predictor:
    from core.training import predict

    with sessions()() as s:
        run = s.get(Run, run_id)
    if run is None:
        raise predict.RunNotReady(_("Run {run} no longer exists.", run=run_id))
    return predict.load_run(settings(), run)


@st.cache_resource(show_spinner=False)
def explainer(db_url: str) -> Explainer:
    """The server's one explaining process (core.jobs.explainer), started when a page that explains first opens."""
    from core.jobs.explainer import Explainer

    process = Explainer(settings())
    process.start()
    return process


def explanation(db_url: str, run_id: int, text: str, target: str | None) -> Explanation:
    """Each word's part in a run's probability of `target` (None: the class it predicts), kept per run, text, class.
    Worked out in the explaining process, not in this page's thread: with a larger model it takes seconds."""
    with st.spinner(_("Working out which words mattered…")):  # shown only if it takes half a second
        return _explanation(db_url, run_id, text, target)


@st.cache_data(max_entries=256, show_spinner=False)
def _explanation(db_url: str, run_id: int, text: str, target: str | None) -> Explanation:
    return explainer(db_url).explain(run_id, text, target)


def explained(runs: list[int], text: str, targets: dict[int, str | None] | None = None) -> dict:
    """Run id -> its Explanation of the text, or the plain message of why there is none."""
    found = {}
    for run_id in runs:
        try:
            found[run_id] = explanation(settings().db_url, run_id, text, (targets or {}).get(run_id))
        except ValueError as e:  # the process answers every refusal as one (core.jobs.explainer)
            found[run_id] = _("This run's explanation could not be worked out: {reason}", reason=e)
    return found


TOWARD, AGAINST = (31, 119, 180), (255, 127, 14)  # blue and orange: told apart in the common colour blindnesses
# The dashboard's font, then CJK fonts: a Chinese text is drawn in a font that has its characters on every system.
TEXT_FONTS = (
    '"Source Sans Pro", "Source Sans 3", "Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Hiragino Sans GB", '
    '"Microsoft YaHei", "WenQuanYi Micro Hei", sans-serif'
)


def in_text_fonts(fig: go.Figure) -> go.Figure:
    """The figure drawn in the dashboard's font, then CJK fonts: its Chinese words and class names without tofu."""
    return fig.update_layout(font={"family": TEXT_FONTS})


def shared_scale(found: dict) -> float:
    """The largest score of all these explanations: the deepest shade, the same in every column."""
    return max((e.largest for e in found.values() if not isinstance(e, str)), default=0.0) or 1.0


def _swatch(colour: tuple[int, int, int], meaning: str) -> str:
    box = f"display:inline-block;width:0.9em;height:0.9em;background:rgba{(*colour, 0.7)};vertical-align:middle"
    return f'<span style="{box}"></span> {html.escape(meaning)}'


def explanation_html(found: Explanation, scale: float) -> str:
    """The text with each word shaded: blue toward the class, orange away from it, darker for a larger push (out of
    `scale`); its points on hover; then the legend. Every piece of the user's text and of class names is escaped."""
    parts, at = [], 0
    for word in found.words:
        parts.append(html.escape(found.text[at : word.start]))  # the gap as typed: spaces, line breaks
        if word.score is None:
            tip, style = _("not read: past the run's max length"), "opacity:0.45;text-decoration:line-through"
        else:
            colour = TOWARD if word.score >= 0 else AGAINST
            tip = _("{points} for '{label}'", points=words.points(word.score), label=found.target)
            style = f"background:rgba{(*colour, round(0.85 * min(abs(word.score) / scale, 1.0), 3))}"
        parts.append(
            f'<span style="{style};border-radius:3px;padding:0 1px" title="{html.escape(tip)}" '
            f'data-score="{word.score}">{html.escape(word.text)}</span>'
        )
        at = word.end
    parts.append(html.escape(found.text[at:]))
    toward = _swatch(TOWARD, _("pushed toward '{label}'", label=found.target))
    away = _swatch(AGAINST, _("pushed away from '{label}'", label=found.target))
    darker = html.escape(_("darker: a stronger push"))
    return (
        f'<div style="font-family:{html.escape(TEXT_FONTS)};line-height:1.9;white-space:pre-wrap">{"".join(parts)}'
        f'</div><div style="font-size:0.85em;opacity:0.8">{toward} &nbsp; {away} &nbsp; '
        f"{darker}</div>"
    )


def show_explanation(container, found: Explanation | str, scale: float) -> None:
    """One run's shaded text and what its words add up to, in a column; or why there is none."""
    if isinstance(found, str):
        container.error(found)
        return
    container.html(explanation_html(found, scale))
    (container.warning if found.approximate else container.caption)(found.summary())


def scale_caption(scale: float) -> None:
    st.caption(
        _(
            "Each word (in Chinese, each character) is shaded by how much it moved the run's probability of the "
            "class named under it. One scale in every column: the deepest shade is {points:.1f} points of "
            "probability. Hover a word for its points.",
            points=100 * scale,
        )
    )


def explain_side_by_side(runs: list[Run], text: str, among: list[Run]) -> None:
    """A text explained by each run, two to a row, each for the class it predicted, on one colour scale."""
    found = explained([r.id for r in runs], text)
    scale = shared_scale(found)
    for start in range(0, len(runs), 2):
        for col, run in zip(st.columns(2), runs[start : start + 2]):
            col.markdown(f"**{describe.run_label(run, among)}**")
            answer = found[run.id]
            if not isinstance(answer, str):
                col.markdown(
                    _(
                        "Predicted: **{label}** ({probability})",
                        label=answer.label,
                        probability=words.percent(answer.probability),
                    )
                )
            show_explanation(col, answer, scale)
    scale_caption(scale)


def curves_figure(frame, x: str = "step", x_max: float | None = None) -> go.Figure:
    """Loss (left) and dev scores (right) of one or more runs: each run in its colour (describe.run_colours),
    each metric in its own line style. `x_max` fixes the x-axis from 0 (a live view then does not rescale); else it
    ends a little after the last point."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            _("Loss, lower is better (solid: train, dashed: dev)"),
            _("Dev scores, higher is better (solid: accuracy, dotted: macro-F1)"),
        ),
    )
    for __, rows in frame.groupby("run_id", sort=False):
        label, colour, shown = rows["run"].iloc[0], rows["colour"].iloc[0], False
        for name, (col, dash, text) in CURVES.items():
            points = rows[rows["name"] == name]
            if points.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=points[x],
                    y=points["value"],
                    name=label,
                    mode="lines+markers" if len(points) < 3 else "lines",
                    line={"color": colour, "dash": dash},
                    legendgroup=label,
                    showlegend=not shown,
                    cliponaxis=False,  # the last point whole, not cut in half by the plot's edge
                    hovertemplate=f"{label}<br>{_(text)}: %{{y:.3f}}<extra></extra>"
                    if col == 1
                    else f"{label}<br>{_(text)}: %{{y:.1%}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            shown = True
    fig.update_xaxes(title_text=_(X_AXES[x]))
    end = x_max or (float(frame[x].max()) if len(frame) else 0)
    if end:
        fig.update_xaxes(range=[0, end * 1.04])  # a margin after the last point, inside the plot
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_annotations(font_size=13)
    fig.update_layout(
        height=380,
        margin={"t": 40, "b": 10},
        showlegend=frame["run_id"].nunique() > 1,
        legend={"orientation": "h", "y": -0.25},
    )
    return in_text_fonts(fig)


def confusion_figure(run: Run, normalised: bool, among: list[Run] | None = None, clickable: bool = False) -> go.Figure:
    """A run's test confusion matrix. clickable: an invisible marker on each cell, so that a click selects the cell
    (Streamlit's selection events do not reach heatmaps themselves)."""
    matrix, classes = tables.confusion(run, normalised)
    text = [[f"{v:.0%}" if normalised else f"{v:.0f}" for v in row] for row in matrix]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=classes,
            y=classes,
            colorscale="Blues",
            text=text,
            texttemplate="%{text}",
            hovertemplate=_("true %{y}, predicted %{x}: %{text}") + "<extra></extra>",
            hoverinfo="skip" if clickable else None,
            showscale=False,
        )
    )
    if clickable:
        cells = [(i, j) for i in range(len(classes)) for j in range(len(classes))]
        fig.add_trace(
            go.Scatter(
                x=[classes[j] for __, j in cells],
                y=[classes[i] for i, __ in cells],
                customdata=[[i, j] for i, j in cells],
                text=[text[i][j] for i, j in cells],
                mode="markers",
                marker={"symbol": "square", "size": max(8, 180 // max(1, len(classes))), "opacity": 0},
                hovertemplate=_("true %{y}, predicted %{x}: %{text}")
                + "<br>"
                + _("click to list these texts")
                + "<extra></extra>",
                showlegend=False,
            )
        )
    fig.update_layout(
        title=describe.run_label(run, among),
        xaxis={"title": _("predicted"), "type": "category"},
        yaxis={"title": _("true"), "type": "category", "autorange": "reversed"},
        height=360,
        margin={"t": 50, "b": 10},
    )
    return in_text_fonts(fig)


def device() -> cost.Device:
    """This machine's training device and its memory (a minute old at most: asking a GPU takes a subprocess)."""
    return _device(settings())


@st.cache_data(ttl=60, show_spinner=False)
def _device(current: Settings) -> cost.Device:
    return cost.this_device(current)


@st.cache_data(max_entries=32, show_spinner=False)
def _plan(
    dataset_id: int, source: str, configs_json: str, version: tuple, here: cost.Device, repeats: int, language: str
) -> dict | str:
    """`language`: the advice and the reasons it returns are in words, kept per language."""
    from core.data import reading

    configs = {m: TrainConfig.from_dict(c) for m, c in json.loads(configs_json).items()}
    try:
        with sessions(write=True)() as s:  # may queue a probe for the worker
            dataset = s.get(Dataset, dataset_id)
            return queue.plan(settings(), s, dataset, source, configs, here, utcnow(), repeats)
    except (models.ModelSourceError, TrainingError, reading.DataError) as e:
        return str(e)


def preset_time(dataset: Dataset, source: str, name: str) -> str:
    """Roughly how long a preset's pair takes on this machine, on this data, from the same estimate as below; ''
    when none can be made."""
    preset = PRESETS[name]
    if not source:
        return ""
    planned = plan(dataset, source, {m: preset_config(name, m) for m in METHOD_NAMES}, preset["repeats"])
    if isinstance(planned, str):
        return ""
    seconds = preset["repeats"] * sum(e["total_seconds"] for e in planned["estimates"].values())  # with loading
    if preset["repeats"] > 1:
        return _(
            "Here, on this data: about {duration} for the pair on {seeds} seeds.",
            duration=words.duration_text(seconds),
            seeds=preset["repeats"],
        )
    return _("Here, on this data: about {duration} for the pair.", duration=words.duration_text(seconds))


def plan(dataset: Dataset, source: str, configs: dict[str, TrainConfig], repeats: int) -> dict | str:
    """The estimates of these runs (core.jobs.queue.plan), kept until a run finishes or the settings change; a
    string says why there are none."""
    with sessions()() as s:
        version = estimate.calibration_version(s)
    configs_json = json.dumps({m: c.to_dict() for m, c in configs.items()}, sort_keys=True)
    with st.spinner(_("Estimating time and memory from your data's token lengths…")):  # if it takes half a second
        return _plan(dataset.id, source, configs_json, version, device(), repeats, i18n.language())


def estimate_panel(dataset: Dataset, source: str, configs: dict[str, TrainConfig], columns, single: str) -> dict:
    """Each method's estimate under its column, the queue-to-result times, and the won't-fit advice. Returns the
    estimates, to keep on the runs when they are queued ({} when none could be made)."""
    repeats = int(st.session_state.get("train_repeats") or 1)  # the seeds asked for below, as of this rerun
    planned = plan(dataset, source, configs, repeats)
    if isinstance(planned, str):
        st.caption(_("No estimate: {reason}", reason=planned))
        return {}
    estimates = planned["estimates"]
    for col, (m, e) in zip(columns, estimates.items()):
        col.caption(  # the total too: on small data, loading the model and saving it take longer than training
            _(
                "Estimated: training about {train}, test scoring {scoring}, about {total} in all with loading and "
                "saving; peak memory {memory}.",
                train=words.duration_text(e["train_seconds"]),
                scoring=words.duration_text(e["score_seconds"]),
                total=words.duration_text(e["total_seconds"]),
                memory=words.memory_text(e["peak_memory_mb"]),
            )
        )

    def wait(seconds):
        return _("unknown (a run ahead has no estimate)") if seconds is None else words.duration_text(seconds)

    waits = {
        "pair": wait(planned["pair_seconds"]),
        "single": wait(planned["single_seconds"][single]),
        "method": _(METHOD_NAMES[single]),
    }
    if repeats > 1:
        st.caption(
            _(
                "From queuing to result, with the queue as it is: the pair on {seeds} seeds about {pair}; one "
                "{method} run about {single}.",
                seeds=repeats,
                **waits,
            )
        )
    else:
        st.caption(
            _(
                "From queuing to result, with the queue as it is: the pair about {pair}; one {method} run about "
                "{single}.",
                **waits,
            )
        )
    if planned["uncalibrated"]:
        st.caption(
            _(
                "A first estimate, from the model's size and your data's token lengths: this machine has not "
                "finished a run like these yet. The background worker measures a few training steps meanwhile, and "
                "every finished run makes the next estimate closer."
            )
        )
    for m, e in estimates.items():
        if e["advice"]:
            st.warning(
                _(
                    "{method} may not fit: it {advice} You can still queue it.",
                    method=_(METHOD_NAMES[m]),
                    advice=e["advice"],
                )
            )
    return {m: {k: v for k, v in e.items() if k != "advice"} for m, e in estimates.items()}


def queue_line(run: Run, times: dict) -> str | None:
    """When a queued or running run should start and end, in words; None when unknown."""
    start, end = times.get(run.id, (None, None))
    now = utcnow()
    if run.status != "queued":
        start = None

    def left(at):
        return words.duration_text((at - now).total_seconds())

    if start is not None and end is not None:
        return _(
            "Expected to start in about {start_in} ({start_at}) and end in about {end_in} ({end_at}).",
            start_in=left(start),
            start_at=clock(start),
            end_in=left(end),
            end_at=clock(end),
        )
    if start is not None:
        return _("Expected to start in about {start_in} ({start_at}).", start_in=left(start), start_at=clock(start))
    if end is not None:
        return _("Expected to end in about {end_in} ({end_at}).", end_in=left(end), end_at=clock(end))
    return None


def queue_times() -> dict:
    """Expected (start, end) of every queued and running run."""
    with sessions()() as s:
        return queue.queue_plan(settings(), s, device(), utcnow())


def estimate_vs_measured(run: Run) -> str | None:
    """A finished run's estimate (taken when it was queued) beside what it measured, in words."""
    e = run.estimate or {}
    if not e or run.train_seconds is None:
        return None
    said = {
        "train": words.duration_text(e["train_seconds"]),
        "memory": words.memory_text(e["peak_memory_mb"]),
        "took": words.duration_text(run.train_seconds),
    }
    if run.peak_memory_mb:
        return _(
            "Estimated before it was queued: training about {train}, peak memory {memory}; it took {took} and {peak}.",
            peak=words.memory_text(run.peak_memory_mb),
            **said,
        )
    return _("Estimated before it was queued: training about {train}, peak memory {memory}; it took {took}.", **said)


def queue_empties_line() -> str:
    """When the current queue should be empty, in words."""
    end = queue.queue_empties_at(queue_times())
    if end is None:
        return _("When the queue empties is not known yet: a run in it has no estimate.")
    left = words.duration_text(max(0.0, (end - utcnow()).total_seconds()))
    return _("The queue should be empty in about {left} ({at}).", left=left, at=clock(end))


def difference_figure(diff, classes: list[str], names: tuple[str, str], mean: bool) -> go.Figure:
    """B's confusion matrix minus A's, on a diverging scale centred on 0 (blue: B has more texts in the cell)."""
    peak = max(1.0, float(abs(diff).max()))
    a_name, b_name = names
    fig = go.Figure(
        go.Heatmap(
            z=diff,
            x=classes,
            y=classes,
            zmin=-peak,
            zmax=peak,
            colorscale="RdBu",
            text=[[("0" if v == 0 else f"{v:+.1f}" if mean else f"{v:+.0f}") for v in row] for row in diff],
            texttemplate="%{text}",
            textfont={"size": 13},  # plotly shrinks the numbers to fit 10 classes (7 px) unless told a size
            hovertemplate=_("true %{{y}}, predicted %{{x}}: %{{text}} texts ({b} minus {a})", b=b_name, a=a_name)
            + "<extra></extra>",
            colorbar={"title": _("texts")},
        )
    )
    fig.update_layout(
        title={  # on two lines: one line did not fit half of a 1024 px screen
            "text": _("{b} minus {a}", b=b_name, a=a_name),
            "subtitle": {"text": _("texts per cell, mean over the seeds") if mean else _("texts per cell")},
        },
        xaxis={"title": _("predicted"), "type": "category"},
        yaxis={"title": _("true"), "type": "category", "autorange": "reversed"},
        height=400,
        margin={"t": 75, "b": 10},
    )
    return in_text_fonts(fig)


def per_class_f1_figure(table, runs: list[Run]) -> go.Figure:
    """Each class's F1 for each run, side by side, in the runs' own colours."""
    colours = describe.run_colours(runs)
    fig = go.Figure(
        [
            go.Bar(
                x=table.index,
                y=table[run.id],
                name=describe.run_label(run, runs),
                marker_color=colours[run.id],
                hovertemplate="%{x}: F1 %{y:.1%}<extra></extra>",
            )
            for run in runs
        ]
    )
    fig.update_layout(
        title=_("F1 of each class, side by side"),
        barmode="group",
        yaxis={"tickformat": ".0%", "range": [0, 1]},
        xaxis={"type": "category"},
        height=380,
        margin={"t": 50, "b": 10},
        legend={"orientation": "h", "y": -0.2},
    )
    return in_text_fonts(fig)


def _shade(colour: str, alpha: float) -> str:
    """'#08519C' at this opacity, for a band under its line."""
    red, green, blue = plotly.colors.hex_to_rgb(colour)
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _trace(method: str, x: list, y: list, hover: list[str], marker: dict | None = None, **more) -> go.Scatter:
    """A study's line or marks of one method, in its colour, saying `hover` over each point; `more` as plotly's."""
    colour = describe.METHOD_SHADES[method][0]
    return go.Scatter(
        x=x,
        y=y,
        **{"mode": "lines+markers", "name": _(METHOD_NAMES[method]), "line": {"color": colour}, **more},
        legendgroup=method,
        marker={"color": colour, "size": 9, "opacity": 1, **(marker or {})},  # sizes vary: plotly would fade them
        hovertext=hover,
        hovertemplate="%{hovertext}<extra></extra>",
        cliponaxis=False,  # a point at the edge whole
    )


def _band(xs: list, bands: list, method: str, what: str) -> go.Scatter | None:
    """The lowest and highest score over the seeds at each point, as a shaded area in the method's colour; None where
    no point has two seeds that differ."""
    spans = [(x, band) for x, band in zip(xs, bands) if band is not None]
    if not any(high > low for __, (low, high) in spans):
        return None
    return go.Scatter(
        x=[x for x, __ in spans] + [x for x, __ in reversed(spans)],
        y=[high for __, (__, high) in spans] + [low for __, (low, __) in reversed(spans)],
        fill="toself",
        fillcolor=_shade(describe.METHOD_SHADES[method][0], 0.15),
        line={"width": 0},
        mode="lines",
        name=_("{method}: {what}, lowest to highest seed", method=_(METHOD_NAMES[method]), what=what),
        legendgroup=method,
        showlegend=False,
        hoverinfo="skip",
    )


ACCURACIES = {"dev": N_("dev accuracy"), "test": N_("test accuracy")}


def _each_method(fig: go.Figure, points: list[dict], score: str):
    """Each method's points that have a `score` ("dev" or "test") accuracy, after drawing its seeds' band on the
    figure: (method, its points, their values, their accuracies)."""
    for method in ("full", "lora"):
        mine = [p for p in points if p["method"] == method and p[score]["accuracy"] is not None]
        if not mine:
            continue
        xs = [p["value"] for p in mine]
        if band := _band(xs, [p[f"{score}_band"] for p in mine], method, _(ACCURACIES[score])):
            fig.add_trace(band)
        yield method, mine, xs, [p[score]["accuracy"] for p in mine]


def _rate_text(rate: float) -> str:
    return f"{rate:g}".replace("e-0", "e-")  # 5e-5, not 5e-05


def _accuracy_range(fig: go.Figure) -> list[float] | None:
    """The y-axis around the accuracies shown, a little room each side, never below 0 % or much above 100 % (plotly
    spreads a flat line from -50 % to 100 %)."""
    ys = [y for trace in fig.data for y in (trace.y or ()) if y is not None]
    if not ys:
        return None
    low, high = min(ys), max(ys)
    room = max(0.03, 0.15 * (high - low))
    return [max(0.0, low - room), min(1.02, high + room)]


def _study_layout(fig: go.Figure, title: str, x_title: str, y_title: str, ticks: list | None = None) -> go.Figure:
    """The look every study chart shares: a log x-axis (its ticks at the values tried, else at powers of ten), the
    accuracies in percent, the legend below."""
    in_text_fonts(fig)
    fig.update_layout(
        title={"text": title},
        xaxis={"type": "log", "title": x_title, "dtick": 1},
        yaxis={"title": y_title, "tickformat": ".0%", "range": _accuracy_range(fig)},
        height=430,
        margin={"t": 60, "b": 10},
        legend={"orientation": "h", "y": -0.2},
        hovermode="closest",
    )
    if ticks:
        fig.update_xaxes(tickvals=[v for v, __ in ticks], ticktext=[t for __, t in ticks])
    return fig


def study_lr_figure(points: list[dict], best: dict, chosen: dict) -> go.Figure:
    """A learning-rate study: each rate's dev accuracy (log axis), one line per method in its colour, its seeds as a
    band where a rate has several; the default rate a diamond, a rate the pruner stopped a hollow circle, the rate
    chosen on dev a star, and beside it the chosen rate's mean on the fresh seeds with their range as a whisker
    (core.results.studies.points, best_rates, chosen_points)."""
    fig, rates = go.Figure(), set()
    for method, mine, xs, ys in _each_method(fig, points, "dev"):
        name, colour = _(METHOD_NAMES[method]), describe.METHOD_SHADES[method][0]
        rates |= set(xs)
        notes = [
            _(" · default rate")
            if p["default"]
            else _(" · stopped early (its dev loss clearly behind a quarter into training)")
            if p["stopped_early"]
            else ""
            for p in mine
        ]
        hover = [
            _("{method}, rate {rate}: dev accuracy {accuracy}", method=name, rate=_rate_text(x), accuracy=f"{y:.1%}")
            + note
            for x, y, note in zip(xs, ys, notes)
        ]
        marker = {
            "size": [13 if p["default"] else 10 for p in mine],
            "symbol": ["diamond" if p["default"] else "circle-open" if p["stopped_early"] else "circle" for p in mine],
            "line": {"color": colour, "width": 2},
        }
        fig.add_trace(_trace(method, xs, ys, hover, marker))
        if method in best:
            rate = best[method]["value"]
            fig.add_trace(
                _trace(
                    method,
                    [rate],
                    [ys[xs.index(rate)]],
                    [_("{method}: rate {rate}, the best on dev, chosen", method=name, rate=_rate_text(rate))],
                    {"symbol": "star", "size": 18, "line": {"color": "white", "width": 1}},
                    mode="markers",
                    name=_("{method}: chosen rate", method=name),
                    showlegend=False,
                )
            )
        fresh = chosen.get(method) or {}
        if fresh.get("dev_band"):  # the chosen rate on the fresh seeds: their mean and range, beside the star
            (low, high), mean = fresh["dev_band"], fresh["dev"]["accuracy"]
            said = _(
                "{method} at {rate} on {seeds} fresh seeds: dev accuracy {low} to {high}, mean {mean}",
                method=name,
                rate=_rate_text(fresh["value"]),
                seeds=fresh["completed"],
                low=f"{low:.1%}",
                high=f"{high:.1%}",
                mean=f"{mean:.1%}",
            )
            fig.add_trace(
                _trace(
                    method,
                    [fresh["value"]],
                    [mean],
                    [said],
                    {"symbol": "line-ew-open", "size": 14, "line": {"width": 2}},
                    mode="markers",
                    name=_("{method}: chosen rate on the fresh seeds", method=name),
                    showlegend=False,
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": [high - mean],
                        "arrayminus": [mean - low],
                        "color": colour,
                        "thickness": 2,
                        "width": 6,
                    },
                )
            )
    ticks = [(r, _rate_text(r)) for r in sorted(rates)]
    return _study_layout(
        fig, _("Dev accuracy at each learning rate"), _("Learning rate (log scale)"), _("Dev accuracy"), ticks
    )


def study_size_figure(points: list[dict], changes: list[tuple]) -> go.Figure:
    """A training-set size study: each method's test accuracy against the training rows (log axis), its seeds as a
    band, and a dotted line where the verdict changes (core.results.studies.verdict_changes), saying to what."""
    fig, sizes = go.Figure(), set()
    for method, mine, xs, ys in _each_method(fig, points, "test"):
        sizes |= set(xs)
        said = {"method": _(METHOD_NAMES[method])}
        hover = [
            _(
                "{method}, {rows} rows: test accuracy {accuracy} (mean of {seeds} seeds)",
                rows=f"{x:,}",
                accuracy=f"{y:.1%}",
                seeds=p["completed"],
                **said,
            )
            if p["completed"] > 1
            else _("{method}, {rows} rows: test accuracy {accuracy}", rows=f"{x:,}", accuracy=f"{y:.1%}", **said)
            for p, x, y in zip(mine, xs, ys)
        ]
        fig.add_trace(_trace(method, xs, ys, hover))
    for value, ahead in changes:
        last = value == max(sizes)  # its words to the left of the line, inside the chart
        fig.add_shape(  # a shape takes the data value on a log axis; an annotation takes its log (plotly.js)
            type="line", x0=value, x1=value, y0=0, y1=1, yref="paper", line={"color": "#737373", "dash": "dot"}
        )
        fig.add_annotation(
            x=math.log10(value),
            y=1,
            yref="paper",
            text=_("{ahead} from {rows} rows", ahead=_(ahead), rows=f"{value:,}"),
            showarrow=False,
            xanchor="right" if last else "left",
            yanchor="bottom",
            font={"size": 12, "color": "#525252"},
        )
    ticks = [(n, f"{n:,}") for n in sorted(sizes)]
    return _study_layout(
        fig, _("Test accuracy by training rows"), _("Training rows (log scale)"), _("Test accuracy"), ticks
    )


def study_rank_figure(points: list[dict]) -> go.Figure:
    """A LoRA rank study: LoRA's test accuracy against the weights it trains (log axis), each point labelled with its
    rank, its seeds as a band; full fine-tuning as a horizontal line with its band, reaching to the weights it
    trains."""
    fig = go.Figure()
    lora = [p for p in points if p["method"] == "lora" and p["test"]["accuracy"] is not None and p["trainable_params"]]
    full = next(
        (p for p in points if p["method"] == "full" and p["test"]["accuracy"] is not None and p["trainable_params"]),
        None,
    )
    if full is not None:
        accuracy, weights = full["test"]["accuracy"], full["trainable_params"]
        xs = [min([p["trainable_params"] for p in lora] or [weights / 1000]), weights]
        if band := _band(xs, [full["test_band"]] * 2, "full", _(ACCURACIES["test"])):
            fig.add_trace(band)
        said = _(
            "Full fine-tuning trains {weights} weights: test accuracy {accuracy}",
            weights=f"{int(weights):,}",
            accuracy=f"{accuracy:.1%}",
        )
        fig.add_trace(
            _trace(
                "full",
                xs,
                [accuracy, accuracy],
                [said, said],
                {"size": [0, 10]},
                mode="lines+markers+text",
                line={"color": describe.METHOD_SHADES["full"][0], "dash": "dash"},
                text=["", _("full fine-tuning")],
                textposition="top left",
            )
        )
    if lora:
        xs, ys = [p["trainable_params"] for p in lora], [p["test"]["accuracy"] for p in lora]
        if band := _band(xs, [p["test_band"] for p in lora], "lora", _(ACCURACIES["test"])):
            fig.add_trace(band)
        ranks = [f"r = {int(p['value'])}" for p in lora]
        hover = [
            _(
                "LoRA {rank} trains {weights} weights: test accuracy {accuracy}",
                rank=r,
                weights=f"{int(x):,}",
                accuracy=f"{y:.1%}",
            )
            for r, x, y in zip(ranks, xs, ys)
        ]
        fig.add_trace(
            _trace("lora", xs, ys, hover, mode="lines+markers+text", text=ranks, textposition="bottom center")
        )
    return _study_layout(
        fig, _("Test accuracy by the weights LoRA trains"), _("Trainable weights (log scale)"), _("Test accuracy")
    )

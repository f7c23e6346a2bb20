"""Compare: the verdict first (which method wins, by how much, how sure we can be), the costs as ratios, then where
the runs differ: the difference matrix, per-class F1, curves, confusion matrices (click a cell for its texts), the
texts they disagree on; any listed text explained by the runs side by side (which words led to each answer)."""

import json

import streamlit as st

import ui
from core import i18n
from core.i18n import N_, _, ngettext
from core.jobs import studies
from core.jobs.runs import ConfigError
from core.results import comparisons, describe, tables, verdict
from core.results import studies as found
from core.results.downloads import safe_csv
from core.store.db import RunStatus, Study

ui.speak()  # the visitor's language (core.i18n), before any word of the page

PICK = 0  # "What to compare": the runs picked by hand, not a comparison group
BADGE = {"lora_better": "green", "full_better": "green", "no_difference": "blue", "too_few": "orange"}
SHORT = {"no_difference": N_("no difference"), "too_few": N_("too few test texts")}  # else: who wins
METHODS = {"full": N_("full fine-tuning"), "lora": "LoRA"}  # a method inside a sentence; LoRA stays LoRA
name_text = verdict.name_text  # a side's name (full fine-tuning, LoRA, run #7) in the reader's language


def capital(text: str) -> str:
    return text[0].upper() + text[1:]


@st.cache_data(max_entries=32, show_spinner=False)
def cached_verdict(db_url: str, pair_ids: tuple, finished: tuple) -> tuple:
    """The verdict and lined-up predictions of completed pairs: computed once per database, runs and the times
    they finished (a completed run's predictions never change)."""
    with ui.sessions()() as s:
        by_id = {r.id: r for r in tables.runs_by_id(s, [i for pair in pair_ids for i in pair])}
        return comparisons.compute_verdict(s, [(by_id[a], by_id[b]) for a, b in pair_ids])


def remember_cell(run_id: int) -> None:
    points = st.session_state[f"compare_cm_{run_id}"].selection.points
    st.session_state.compare_cell = (run_id, *points[0]["customdata"]) if points else None


def verdict_card(result: verdict.Verdict, pairs: list, key: str = "compare_verdict", compact: bool = False) -> None:
    """The verdict in a card: who wins, both accuracies, by how much and how sure; its numbers (unless `compact`); and
    how to read it, with each seed's result. A study shows two side by side (keys: `key`, and its seeds table's)."""
    a_name, b_name = (name_text(n) for n in result.names)
    acc = result.accuracy
    first, *rest = result.lines()  # both accuracies, the difference for the winner, how sure; then macro-F1
    badge = _("{winner} wins", winner=name_text(result.winner())) if result.winner() else _(SHORT[acc.outcome])
    with st.container(border=True, key=key):
        st.markdown(f":{BADGE[acc.outcome]}-badge[{badge}] **{first}**")
        st.markdown("  \n".join(rest[:2]))
        st.markdown(rest[2])
        if not compact:  # beside another card: the lines alone, the numbers are in them
            c1, c2, c3, c4 = st.columns(4)
            for col, name, scores, f1_scores in (
                (c1, a_name, acc.a, result.f1_macro.a),
                (c2, b_name, acc.b, result.f1_macro.b),
            ):
                f1 = verdict.percent_text(sum(f1_scores) / len(f1_scores))
                glossary = ui.glossary("accuracy", "macro-F1")
                col.metric(
                    _("{method}, test accuracy", method=capital(name)),
                    verdict.percent_text(sum(scores) / len(scores)),
                    help=_(
                        "Macro-F1 {score}; means over {seeds} seeds. {glossary}",
                        score=f1,
                        seeds=result.seeds,
                        glossary=glossary,
                    )
                    if result.seeds > 1
                    else _("Macro-F1 {score}. {glossary}", score=f1, glossary=glossary),
                )
            if result.mcnemar_p is not None:
                c3.metric(
                    _("McNemar's p"),
                    f"{result.mcnemar_p:.3f}" if result.mcnemar_p >= 0.001 else "< 0.001",
                    help=_(
                        "Of the texts only one of them got right, {only_b} went to {b} and {only_a} to {a}. p is how "
                        "often a split at least this uneven happens by chance when both are equally good; under 0.05 "
                        "is rarely chance.",
                        only_b=result.only_b,
                        b=b_name,
                        only_a=result.only_a,
                        a=a_name,
                    ),
                )
            else:
                c3.metric(
                    _("Seeds"),
                    result.seeds,
                    help=_("Pairs trained with seeds s, s+1, ...: each seed's result is below."),
                )
            c4.metric(
                _("Test texts"),
                f"{result.test_size:,}",
                help=_("One text is {points} points.", points=f"{100 / result.test_size:.2f}"),
            )
        said = {
            "resamples": f"{verdict.RESAMPLES:,}",
            "texts": f"{result.test_size:,}",
            "floor": f"{verdict.noise_floor(result.test_size):.1f}",
            "resolution": f"{verdict.RESOLUTION_POINTS:g}",
        }
        # folded: the card, its four lines and its numbers, fits a 1024 x 768 screen under the page's title
        with st.expander(_("How to read it, and each seed's result") if result.seeds > 1 else _("How to read it")):
            if result.seeds > 1:
                how = _(
                    "Differences are in points (88.0 % against 86.5 % is 1.5 points). The 95 % interval is the range "
                    "the difference would likely fall in on other test texts and seeds (a bootstrap: texts and seeds "
                    "resampled {resamples} times). It must lie wholly on one side of 0 for a winner. With {texts} "
                    "test texts, differences under about {floor} points cannot be told from chance; an interval wider "
                    "than ±{resolution} points is too wide to call the methods equal.",
                    **said,
                )
            else:
                how = _(
                    "Differences are in points (88.0 % against 86.5 % is 1.5 points). The 95 % interval is the range "
                    "the difference would likely fall in on other test texts (a bootstrap: the test texts resampled "
                    "{resamples} times). It must lie wholly on one side of 0 for a winner. With {texts} test texts, "
                    "differences under about {floor} points cannot be told from chance; an interval wider than "
                    "±{resolution} points is too wide to call the methods equal.",
                    **said,
                )
            st.caption(how)
            if result.seeds > 1:
                st.caption(_("Each seed's test accuracy, and {b} minus {a} in points:", b=b_name, a=a_name))
                seeds = comparisons.seeds_frame(result, pairs)
                points_col = st.column_config.NumberColumn(format="%+.1f")
                st.dataframe(
                    comparisons.shown(seeds),
                    hide_index=True,
                    column_config={
                        comparisons.header(c): points_col if "difference" in c else ui.PERCENT_COLUMN
                        for c in seeds.columns[2:]
                    },
                    key=key.replace("verdict", "seeds"),
                )


# --- Studies: a comparison with one setting varied (core.jobs.studies), opened with ?study=ID ---------------------
STUDY_POLL_S = 3.0  # how often a study still training reads the database


@st.cache_data(max_entries=16, show_spinner=False)
def study_found(db_url: str, study_id: int, state: tuple, language: str) -> dict:
    """core.results.studies.view, computed once per database, study, state of its runs (`state`: each run's id,
    status and end, and the grid) and language (its sentences and notes are words), without the runs themselves."""
    with ui.sessions()() as s:
        return {k: v for k, v in found.view(s, s.get(Study, study_id)).items() if k != "runs"}


def open_study() -> None:
    for name in ("group", "runs"):
        st.query_params.pop(name, None)
    st.query_params["study"] = str(st.session_state.pop("compare_study"))


def close_study() -> None:
    st.query_params.pop("study", None)


def add_rate(study_id: int, method: str, rate: float) -> None:
    ui.speak()  # a callback: it writes a message, in the visitor's language
    try:
        with ui.sessions(write=True)() as s:
            run = studies.add_rate(s, s.get(Study, study_id), method, rate)
    except ConfigError as e:
        return ui.flash("error", " ".join(e.problems))
    ui.keep_worker_running()
    ui.flash(
        "success",
        _(
            "Queued run #{run}: {method} at rate {rate}. Once it has trained, the best rate is chosen again, and "
            "trained on the fresh seeds if it changed.",
            run=run.id,
            method=_(METHODS[method]),
            rate=f"{rate:g}",
        ),
    )


def study_verdicts(study: Study, view: dict) -> None:
    """A learning-rate study's two verdicts side by side, each as a comparison's card: at the default rates, and
    each method at its best rate on the dev set, on the fresh seeds."""
    rates, best = study.grid.get("default", {}), view["best"]
    first = study.first_seed + 1
    fresh = (
        _("fresh seeds {first}-{last}", first=first, last=first + study.seeds - 1)
        if study.seeds > 1
        else _("fresh seed {first}", first=first)
    )
    sides = {
        "default": (
            _("At the default rates"),
            _(
                "Full fine-tuning {full}, LoRA {lora}; seed {seed}.",
                full=f"{rates.get('full', 0):g}",
                lora=f"{rates.get('lora', 0):g}",
                seed=study.first_seed,
            ),
            _("Comes once both default rates have trained."),
        ),
        "tuned": (
            _("Each at its best rate on the dev set"),
            _(
                "Full fine-tuning {full}, LoRA {lora}; {fresh}.",
                full=f"{best['full']['value']:g}",
                lora=f"{best['lora']['value']:g}",
                fresh=fresh,
            )
            if len(best) == 2
            else _("Chosen once every rate of both methods has trained; then trained on {fresh}.", fresh=fresh),
            _("Comes once the chosen rates have trained on the fresh seeds."),
        ),
    }
    for col, (name, (title, which, waiting)) in zip(st.columns(2), sides.items()):
        with col:
            st.markdown(f"**{title}**")
            st.caption(which)
            pair_ids = tuple(view["pairs"][name])
            if not pair_ids:
                st.info(waiting)
                continue
            with ui.sessions()() as s:
                by_id = {r.id: r for r in tables.runs_by_id(s, [i for pair in pair_ids for i in pair])}
            pairs = [(by_id[a], by_id[b]) for a, b in pair_ids]
            try:
                with st.spinner(_("Working out the verdict…")):
                    result, __ = cached_verdict(
                        ui.settings().db_url, pair_ids, tuple(str(r.finished_at) for pair in pairs for r in pair)
                    )
            except comparisons.NotComparable as e:
                st.warning(str(e))
                continue
            verdict_card(result, pairs, key=f"compare_study_{name}_verdict", compact=True)


def study_chart(study: Study, view: dict) -> None:
    """The study's chart and what it says, by what it varies."""
    pts = view["points"]
    if study.vary == "lr":
        st.plotly_chart(ui.study_lr_figure(pts, view["best"], view["chosen"]), key="compare_study_chart")
        st.caption(
            _(
                "Dev accuracy of the weights each run kept. ◆ the default rate (always trained to the end) · ★ the "
                "rate chosen on the dev set · ⊢ beside it, its mean and range on the fresh seeds · ○ a rate stopped "
                "early, its dev loss clearly behind the others' a quarter into its training. The test set is kept "
                "for the verdicts."
            )
        )
        if view["sentence"]:
            (st.warning if view["disagree"] else st.info)(view["sentence"], icon=":material/balance:")
        study_verdicts(study, view)
        for method, chosen in view["best"].items():
            if chosen["edge"]:
                (note,) = found.edge_notes({method: chosen})
                st.info(note)
                if chosen["next"]:
                    st.button(
                        _("Try {rate} for {method}", rate=f"{chosen['next']:g}", method=_(METHODS[method])),
                        key=f"compare_study_add_{method}",
                        on_click=add_rate,
                        args=(study.id, method, chosen["next"]),
                        help=_("Trains one more rate on the first seed; the best rate is then chosen again."),
                    )
        return
    seeds = study.seeds > 1
    if study.vary == "train_size":
        st.plotly_chart(ui.study_size_figure(pts, view["changes"]), key="compare_study_chart")
        st.caption(
            _(
                "Test accuracy at each size, the mean over the seeds. The shaded bands span the lowest to the highest "
                "seed."
            )
            if seeds
            else _("Test accuracy at each size.")
        )
    else:
        st.plotly_chart(ui.study_rank_figure(pts), key="compare_study_chart")
        st.caption(
            _(
                "LoRA's test accuracy at each rank against the weights it trains; full fine-tuning's as the dashed "
                "line. The shaded bands span the lowest to the highest seed."
            )
            if seeds
            else _(
                "LoRA's test accuracy at each rank against the weights it trains; full fine-tuning's as the dashed "
                "line."
            )
        )
    if view["sentence"]:
        st.info(view["sentence"], icon=":material/balance:")
    if view["verdicts"]:
        st.caption(_("The verdict at each size:") if study.vary == "train_size" else _("The verdict at each rank:"))
        st.dataframe(found.verdicts_frame(study.vary, view["verdicts"]), hide_index=True, key="compare_study_table")


def study_state(study_id: int) -> tuple[Study | None, list, dict, bool]:
    """The study, its runs, how far it is (core.results.studies.study_progress) and whether runs are still to end
    (a learning-rate study queues its fresh seeds once its rates have ended: planned, not yet queued)."""
    with ui.sessions()() as s:
        study = s.get(Study, study_id)
        if study is None:
            return None, [], {}, False
        members = found.study_runs(s, study_id)
    progress = found.study_progress(study, members)
    return study, members, progress, progress["active"]


def show_study(study_id: int) -> None:
    st.button(
        _("← Comparisons"), key="compare_study_back", on_click=close_study, help=_("Back to comparing runs and pairs.")
    )
    was_active = study_state(study_id)[3]

    @st.fragment(run_every=STUDY_POLL_S if was_active else None)
    def live() -> None:
        ui.speak()  # a fragment's rerun runs alone, in a fresh thread
        study, members, progress, active = study_state(study_id)
        if study is None:
            return st.error(_("Study {study} was deleted.", study=study_id))
        if was_active != active:
            st.rerun()  # the study just ended, or a rate was added: redraw the whole page, polling or not
        st.subheader(found.study_label(study))
        ui.show_flash()
        if progress["completed"] == progress["planned"]:
            st.caption(_("All {runs} runs completed.", runs=progress["planned"]))
        else:
            failed = progress["ended"] - progress["completed"]
            said = {"done": progress["completed"], "planned": progress["planned"], "failed": failed}
            if failed and active:
                text = _(
                    "{done} of {planned} runs completed, {failed} failed or cancelled (resume them on Runs); the "
                    "chart fills in as they do",
                    **said,
                )
            elif failed:
                text = _(
                    "{done} of {planned} runs completed, {failed} failed or cancelled (resume them on Runs)", **said
                )
            elif active:
                text = _("{done} of {planned} runs completed; the chart fills in as they do", **said)
            else:
                text = _("{done} of {planned} runs completed", **said)
            st.progress(progress["completed"] / progress["planned"], text=text)
            if training := next((r for r in members if r.status == RunStatus.RUNNING.value), None):
                st.page_link(
                    "pages/runs.py",
                    label=_("Watch run #{run} train", run=training.id),
                    query_params={"run": str(training.id)},
                    icon=":material/monitoring:",
                )
        state = (tuple((r.id, r.status, str(r.finished_at)) for r in members), json.dumps(study.grid))
        with st.spinner(_("Reading the study…")):
            view = study_found(ui.settings().db_url, study_id, state, i18n.language())
        if not any(p["completed"] for p in view["points"]):
            return st.info(_("The chart appears once the first runs have completed."))
        study_chart(study, view)

    live()


def study_section() -> None:
    """A study named in the address opens alone (the page stops after it); else a box to open one."""
    with ui.sessions()() as s:
        every = {study.id: found.study_label(study) for study in found.studies(s)}
    wanted = ui.query_ids("study")
    if wanted and wanted[0] in every:
        show_study(wanted[0])
        st.stop()
    if wanted is not None:
        st.error(
            _(
                "There is no study {study} (it may have been deleted). Choose one below.",
                study=st.query_params["study"],
            )
        )
    if every:
        st.selectbox(
            _("Open a study"),
            list(every),
            None,
            every.get,
            key="compare_study",
            on_change=open_study,
            placeholder=_("Choose a study"),
            help=_(
                "A comparison with one setting varied (learning rate, training rows or LoRA rank), launched on the "
                "Train page: its chart and its verdicts."
            ),
        )


st.title(_("Compare"))
study_section()
with ui.sessions()() as s:
    done = {r.id: r for r in tables.completed_runs(s)}
    latest = tables.latest_pair(s)
    groups = {g.id: (g, comparisons.group_runs(s, g.id)) for g in comparisons.groups(s)}
ready = {g: comparisons.completed_pairs(runs) for g, (__, runs) in groups.items()}
ready = {g: pairs for g, pairs in ready.items() if pairs}
if len(done) < 2:
    st.info(_("Compare needs two completed runs. Queue a pair (full fine-tuning + LoRA) on the Train page."))
    st.page_link("pages/train.py", label=_("Go to Train"), icon=":material/model_training:")
    st.stop()


def forget_unknown_group() -> None:
    """A choice made replaces the address's comparison (which may name none): the page writes the address anew."""
    st.query_params.pop("group", None)


def what_label(choice: int) -> str:
    if choice == PICK:
        return _("Runs I pick")
    group, runs = groups[choice]
    label = comparisons.group_label(group, runs)
    if len(ready[choice]) < group.repeats:
        return _(
            "{comparison} ({done} of {pairs} pairs done)",
            comparison=label,
            done=len(ready[choice]),
            pairs=group.repeats,
        )
    return label


url_group, url_runs = ui.query_ids("group"), ui.query_ids("runs")
options = [*ready, PICK]
unknown = url_group is not None and not (url_group and url_group[0] in ready)
if unknown:  # said as the Runs page says an unknown run; the address stays until another comparison is chosen
    asked = st.query_params["group"]
    if url_group and url_group[0] in groups:
        st.warning(
            _("Comparison #{group} has no completed pair yet: its verdict shows once a pair is done.", group=asked)
        )
    else:
        st.error(
            _(
                "There is no comparison {group} (it may have been deleted). Choose one from the list below.",
                group=asked,
            )
        )
first = url_group[0] if url_group and url_group[0] in ready else (PICK if url_runs is not None else options[0])
choice = st.selectbox(
    _("What to compare"),
    options,
    index=options.index(first),
    format_func=what_label,
    key="compare_what",
    on_change=forget_unknown_group,
    help=_("A comparison launched on the Train page (full fine-tuning and LoRA, once per seed), or runs you pick."),
)
if choice == PICK:
    chosen = st.multiselect(
        _("Runs to compare"),
        list(done),
        default=[i for i in url_runs or [] if i in done] or latest,
        format_func=lambda i: describe.run_label(done[i]),
        key="compare_runs",
        help=_("Completed runs; the most recent pair is chosen for you."),
    )
    st.query_params.pop("group", None)
    st.query_params["runs"] = ",".join(map(str, chosen))
    if len(chosen) < 2:
        st.info(_("Pick at least two runs."))
        st.stop()
    chosen_runs = [done[i] for i in chosen]
    pairs = comparisons.pairs_of(chosen_runs)
else:
    if not unknown:
        st.query_params.pop("runs", None)
        st.query_params["group"] = str(choice)
    pairs = ready[choice]
    chosen_runs = [r for pair in pairs for r in pair]
    waiting = [r for r in groups[choice][1] if r.status != RunStatus.COMPLETED.value]
    if waiting:
        listed = _(", ").join(f"#{r.id} {tables.status_text(r.status)}" for r in waiting)
        st.caption(
            _(
                "{count} run(s) of this comparison have not completed ({runs}); the figures below use the pairs that "
                "have.",
                count=len(waiting),
                runs=listed,
            )
        )

st.subheader(_("Verdict"))
result = lined = None
if not pairs:
    st.info(
        _(
            "A verdict needs full fine-tuning and LoRA pairs, or exactly two runs; these runs are neither. "
            "The figures below still compare them."
        )
    )
else:
    try:
        finished = tuple(str(r.finished_at) for pair in pairs for r in pair)
        with st.spinner(_("Working out the verdict…")):
            result, lined = cached_verdict(ui.settings().db_url, tuple((a.id, b.id) for a, b in pairs), finished)
    except comparisons.NotComparable as e:
        st.warning(str(e))
if result is not None:
    verdict_card(result, pairs)

if pairs:
    sides = comparisons.side_names(pairs)
    a_name, b_name = (name_text(n) for n in sides)
    st.subheader(_("What it costs: {b} as a multiple of {a}", b=b_name, a=a_name))
    ratios = comparisons.cost_ratios(pairs)
    for col, (key, (name, __)) in zip(st.columns(len(verdict.COSTS)), verdict.COSTS.items()):
        ratio, said = ratios[key], {"b": b_name, "a": a_name, "cost": _(name)}
        if ratio is not None:
            said["ratio"] = ratio.text()
        col.metric(
            capital(_(name)),
            "–" if ratio is None else verdict.ratio_text(ratio.mean),
            help=None
            if ratio is None
            else _(
                "{b}'s {cost} over {a}'s: {ratio}, mean over {seeds} seeds and their range.", seeds=len(pairs), **said
            )
            if len(pairs) > 1
            else _("{b}'s {cost} over {a}'s: {ratio}.", **said),
        )
    st.markdown(verdict.cost_sentence(ratios, sides))
    if len(pairs) > 1:
        ranges = _("; ").join(f"{_(verdict.COSTS[k][0])} {r.text()}" for k, r in ratios.items() if r is not None)
        st.caption(_("Means over {seeds} seeds, each with its range: {ranges}.", seeds=len(pairs), ranges=ranges))
    note = describe.times_note(chosen_runs)
    if note:
        st.warning(note)

st.subheader(_("Test scores and costs"))
st.dataframe(comparisons.scores_table(chosen_runs), hide_index=True, key="compare_scores")
st.download_button(
    _("Download these scores (CSV)"),
    safe_csv(comparisons.shown(comparisons.scores(chosen_runs))),
    "lora-lab-scores.csv",
    "text/csv",
    key="compare_download_scores",
    help=_("Opens in Excel; cells that look like formulas are saved as plain text."),
)
st.caption(
    _(
        "Model size is the weights saved to disk (for LoRA: the add-ons and the head); the tokenizer saved beside "
        "them is the same for both methods and not counted."
    )
)

if lined is not None:
    st.subheader(_("Where they differ"))
    diff = comparisons.difference_matrix(lined, pairs)
    fig = ui.difference_figure(diff, lined.classes, (a_name, b_name), mean=len(pairs) > 1)
    left, right = st.columns(2)
    left.plotly_chart(fig, key="compare_difference")
    left.caption(
        _(
            "Blue: {b} puts more texts in that cell, red: fewer. On the diagonal (right answers) blue favours {b}; "
            "off it (mistakes), red does.",
            b=b_name,
        )
    )
    bars = ui.per_class_f1_figure(comparisons.per_class_f1(chosen_runs), chosen_runs)
    right.plotly_chart(bars, key="compare_f1")

st.subheader(_("Training curves"))
x = st.radio(
    _("X-axis"),
    list(ui.X_AXES),
    format_func=lambda axis: _(ui.X_AXES[axis]),
    key="compare_x",
    horizontal=True,
    help=_("Examples seen is fairest when the runs used different batch sizes."),
)
with ui.sessions()() as s:
    st.plotly_chart(ui.curves_figure(tables.curves_frame(s, chosen_runs), x), key="compare_curves")

st.subheader(_("Confusion matrices"))
normalised = st.toggle(
    _("Show shares of each true class instead of counts"),
    key="compare_normalised",
    help=_("Each row then sums to 100%: how each true class was predicted."),
)
st.caption(_("Click a cell to list the test texts in it."))


def explain_a_listed_text(listed, runs: list, key: str) -> None:
    """Pick a text of the table above by its row: each run's shaded words, side by side (ui.explain_side_by_side)."""
    if listed.empty:
        return
    rows = listed.reset_index(drop=True)
    pick = st.selectbox(
        _("Why? Explain a text"),
        range(len(rows)),
        index=None,
        format_func=lambda i: _("row {row}: {text}", row=rows["test row"][i], text=rows["text"][i]),
        placeholder=_("Pick a text of the table to see which words led each run to its answer"),
        key=key,
        help=_("Each run's answer for the text, its words shaded: blue pushed the model toward it, orange away."),
    )
    if pick is not None:
        ui.explain_side_by_side(runs, rows["text"][pick], chosen_runs)


def pair_of(run_id: int) -> list:
    """The run and the run it is compared with; every chosen run when it is in no pair."""
    return next((list(pair) for pair in pairs if run_id in (pair[0].id, pair[1].id)), chosen_runs)


def cell_listing(run_id: int, true: int, pred: int) -> None:
    """The texts of the clicked cell, under the row of matrices that holds it, scrolled into view: listed under
    every matrix, they were some 800 px below a first-row click, out of sight."""
    try:
        with ui.sessions()() as s:
            cell_lined = lined or comparisons.line_up(s, [done[run_id]])
    except comparisons.NotComparable as e:
        return st.warning(str(e))
    in_cell = comparisons.cell_texts(cell_lined, run_id, true, pred)
    names = cell_lined.classes
    said = {"run": describe.run_label(done[run_id], chosen_runs), "true": names[true], "predicted": names[pred]}
    st.markdown(
        ngettext(
            "**{run}: true {true}, predicted {predicted}: {n} test text**",
            "**{run}: true {true}, predicted {predicted}: {n} test texts**",
            len(in_cell),
            **said,
        )
    )
    st.dataframe(comparisons.shown(in_cell), hide_index=True, key="compare_cell_texts")
    explain_a_listed_text(in_cell, pair_of(run_id), "compare_cell_explain")
    anchor = f"compare-cell-{run_id}-{true}-{pred}"  # a new cell, a new element: its script runs once per click
    st.html(
        f'<div id="{anchor}"></div><script>document.getElementById("{anchor}")'
        '.scrollIntoView({behavior: "smooth", block: "nearest"});</script>',
        unsafe_allow_javascript=True,
    )


cell = st.session_state.get("compare_cell")
width = 2 if pairs else min(3, len(chosen_runs))
for start in range(0, len(chosen_runs), width):
    row = chosen_runs[start : start + width]
    for col, run in zip(st.columns(width), row):
        col.plotly_chart(
            ui.confusion_figure(run, normalised, chosen_runs, clickable=True),
            key=f"compare_cm_{run.id}",
            on_select=lambda run_id=run.id: remember_cell(run_id),
            selection_mode="points",
        )
    if cell and cell[0] in {r.id for r in row}:
        cell_listing(*cell)

st.subheader(_("Where they disagree"))
try:
    with ui.sessions()() as s:
        disagree = comparisons.disagreements(s, chosen_runs)
except comparisons.NotComparable as e:
    st.warning(str(e))
else:
    st.caption(
        _(
            "{count} test texts get different labels from these runs (✓ right, ✗ wrong). Each run's column is headed "
            "by its number, its method and its seed (when the seeds differ).",
            count=len(disagree),
        )
    )
    headers = {
        describe.column_label(r, chosen_runs): st.column_config.TextColumn(help=describe.run_label(r))
        for r in chosen_runs
    }
    text = st.column_config.TextColumn(width="medium", help=_("Hover or widen the column for the whole text."))
    shown = comparisons.shown(disagree)
    st.dataframe(shown, hide_index=True, column_config={comparisons.header("text"): text, **headers})
    st.download_button(
        _("Download these texts (CSV)"),
        safe_csv(shown),
        "lora-lab-disagreements.csv",
        "text/csv",
        key="compare_download_disagreements",
        help=_("Opens in Excel; cells that look like formulas are saved as plain text."),
    )
    explain_a_listed_text(disagree, chosen_runs, "compare_explain")

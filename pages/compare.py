"""Compare: the verdict first (which method wins, by how much, how sure we can be), the costs as ratios, then where
the runs differ: the difference matrix, per-class F1, curves, confusion matrices (click a cell for its texts), the
texts they disagree on; any listed text explained by the runs side by side (which words led to each answer)."""

import json

import streamlit as st

import ui
from core.jobs import studies
from core.jobs.runs import ConfigError
from core.results import comparisons, describe, tables, verdict
from core.results import studies as found
from core.results.downloads import safe_csv
from core.store.db import RunStatus, Study
from core.training.config import METHOD_NAMES

ui.speak()  # the visitor's language (core.i18n), before any word of the page

PICK = 0  # "What to compare": the runs picked by hand, not a comparison group
BADGE = {"lora_better": "green", "full_better": "green", "no_difference": "blue", "too_few": "orange"}
SHORT = {"no_difference": "no difference", "too_few": "too few test texts"}  # else: who wins


@st.cache_data(max_entries=32, show_spinner="Working out the verdict…")
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
    a_name, b_name = result.names
    acc = result.accuracy
    first, *rest = result.lines()  # both accuracies, the difference for the winner, how sure; then macro-F1
    badge = f"{result.winner()} wins" if result.winner() else SHORT[acc.outcome]
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
                col.metric(
                    f"{name[0].upper() + name[1:]}, test accuracy",
                    f"{sum(scores) / len(scores):.1f} %",
                    help=f"Macro-F1 {sum(f1_scores) / len(f1_scores):.1f} %"
                    + (f"; means over {result.seeds} seeds. " if result.seeds > 1 else ". ")
                    + ui.glossary("accuracy", "macro-F1"),
                )
            if result.mcnemar_p is not None:
                c3.metric(
                    "McNemar's p",
                    f"{result.mcnemar_p:.3f}" if result.mcnemar_p >= 0.001 else "< 0.001",
                    help=f"Of the texts only one of them got right, {result.only_b} went to {b_name} and "
                    f"{result.only_a} to {a_name}. p is how often a split at least this uneven happens by chance "
                    "when both are equally good; under 0.05 is rarely chance.",
                )
            else:
                c3.metric(
                    "Seeds", result.seeds, help="Pairs trained with seeds s, s+1, ...: each seed's result is below."
                )
            c4.metric("Test texts", f"{result.test_size:,}", help=f"One text is {100 / result.test_size:.2f} points.")
        floor = verdict.noise_floor(result.test_size)
        spread = "texts and seeds" if result.seeds > 1 else "the test texts"
        # folded: the card, its four lines and its numbers, fits a 1024 x 768 screen under the page's title
        with st.expander("How to read it" + (", and each seed's result" if result.seeds > 1 else "")):
            st.caption(
                "Differences are in points (88.0 % against 86.5 % is 1.5 points). The 95 % interval "
                "is the range the difference would likely fall in on other test "
                f"texts{' and seeds' if result.seeds > 1 else ''} (a bootstrap: {spread} resampled "
                f"{verdict.RESAMPLES:,} times). It must lie wholly on one side of 0 for a winner. With "
                f"{result.test_size:,} test texts, differences under about {floor:.1f} points cannot be told from "
                f"chance; an interval wider than ±{verdict.RESOLUTION_POINTS:g} points is too wide to call the "
                "methods equal."
            )
            if result.seeds > 1:
                st.caption(f"Each seed's test accuracy, and {b_name} minus {a_name} in points:")
                seeds = comparisons.seeds_frame(result, pairs)
                points_col = st.column_config.NumberColumn(format="%+.1f")
                st.dataframe(
                    seeds,
                    hide_index=True,
                    column_config={
                        c: points_col if "difference" in c else ui.PERCENT_COLUMN for c in seeds.columns[2:]
                    },
                    key=key.replace("verdict", "seeds"),
                )


# --- Studies: a comparison with one setting varied (core.jobs.studies), opened with ?study=ID ---------------------
STUDY_POLL_S = 3.0  # how often a study still training reads the database


@st.cache_data(max_entries=16, show_spinner="Reading the study…")
def study_found(db_url: str, study_id: int, state: tuple) -> dict:
    """core.results.studies.view, computed once per database, study and state of its runs (`state`: each run's id,
    status and end, and the grid), without the runs themselves."""
    with ui.sessions()() as s:
        return {k: v for k, v in found.view(s, s.get(Study, study_id)).items() if k != "runs"}


def open_study() -> None:
    for name in ("group", "runs"):
        st.query_params.pop(name, None)
    st.query_params["study"] = str(st.session_state.pop("compare_study"))


def close_study() -> None:
    st.query_params.pop("study", None)


def add_rate(study_id: int, method: str, rate: float) -> None:
    try:
        with ui.sessions(write=True)() as s:
            run = studies.add_rate(s, s.get(Study, study_id), method, rate)
    except ConfigError as e:
        return ui.flash("error", " ".join(e.problems))
    ui.keep_worker_running()
    ui.flash(
        "success",
        f"Queued run #{run.id}: {METHOD_NAMES[method]} at rate {rate:g}. Once it has trained, the best rate is chosen "
        "again, and trained on the fresh seeds if it changed.",
    )


def study_verdicts(study: Study, view: dict) -> None:
    """A learning-rate study's two verdicts side by side, each as a comparison's card: at the default rates, and
    each method at its best rate on the dev set, on the fresh seeds."""
    rates, best = study.grid.get("default", {}), view["best"]
    first = study.first_seed + 1
    fresh = f"fresh seeds {first}-{first + study.seeds - 1}" if study.seeds > 1 else f"fresh seed {first}"
    sides = {
        "default": (
            "At the default rates",
            f"Full fine-tuning {rates.get('full', 0):g}, LoRA {rates.get('lora', 0):g}; seed {study.first_seed}.",
            "Comes once both default rates have trained.",
        ),
        "tuned": (
            "Each at its best rate on the dev set",
            f"Full fine-tuning {best['full']['value']:g}, LoRA {best['lora']['value']:g}; {fresh}."
            if len(best) == 2
            else f"Chosen once every rate of both methods has trained; then trained on {fresh}.",
            "Comes once the chosen rates have trained on the fresh seeds.",
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
                result, _ = cached_verdict(
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
            "Dev accuracy of the weights each run kept. ◆ the default rate (always trained to the end) · ★ the rate "
            "chosen on the dev set · ⊢ beside it, its mean and range on the fresh seeds · ○ a rate stopped early, "
            "clearly behind the others at half its training. The test set is kept for the verdicts."
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
                        f"Try {chosen['next']:g} for {METHOD_NAMES[method].lower() if method == 'full' else 'LoRA'}",
                        key=f"compare_study_add_{method}",
                        on_click=add_rate,
                        args=(study.id, method, chosen["next"]),
                        help="Trains one more rate on the first seed; the best rate is then chosen again.",
                    )
        return
    bands = " The shaded bands span the lowest to the highest seed." if study.seeds > 1 else ""
    if study.vary == "train_size":
        st.plotly_chart(ui.study_size_figure(pts, view["changes"]), key="compare_study_chart")
        st.caption(f"Test accuracy at each size{', the mean over the seeds' if study.seeds > 1 else ''}.{bands}")
    else:
        st.plotly_chart(ui.study_rank_figure(pts), key="compare_study_chart")
        st.caption(
            "LoRA's test accuracy at each rank against the weights it trains; full fine-tuning's as the dashed line."
            + bands
        )
    if view["sentence"]:
        st.info(view["sentence"], icon=":material/balance:")
    if view["verdicts"]:
        st.caption(f"The verdict at each {'size' if study.vary == 'train_size' else 'rank'}:")
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
        "← Comparisons", key="compare_study_back", on_click=close_study, help="Back to comparing runs and pairs."
    )
    was_active = study_state(study_id)[3]

    @st.fragment(run_every=STUDY_POLL_S if was_active else None)
    def live() -> None:
        study, members, progress, active = study_state(study_id)
        if study is None:
            return st.error(f"Study {study_id} was deleted.")
        if was_active != active:
            st.rerun()  # the study just ended, or a rate was added: redraw the whole page, polling or not
        st.subheader(found.study_label(study))
        ui.show_flash()
        if progress["completed"] == progress["planned"]:
            st.caption(f"All {progress['planned']} runs completed.")
        else:
            failed = progress["ended"] - progress["completed"]
            st.progress(
                progress["completed"] / progress["planned"],
                text=f"{progress['completed']} of {progress['planned']} runs completed"
                + (f", {failed} failed or cancelled (resume them on Runs)" if failed else "")
                + ("; the chart fills in as they do" if active else ""),
            )
            if training := next((r for r in members if r.status == RunStatus.RUNNING.value), None):
                st.page_link(
                    "pages/runs.py",
                    label=f"Watch run #{training.id} train",
                    query_params={"run": str(training.id)},
                    icon=":material/monitoring:",
                )
        state = (tuple((r.id, r.status, str(r.finished_at)) for r in members), json.dumps(study.grid))
        view = study_found(ui.settings().db_url, study_id, state)
        if not any(p["completed"] for p in view["points"]):
            return st.info("The chart appears once the first runs have completed.")
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
        st.error(f"There is no study {st.query_params['study']} (it may have been deleted). Choose one below.")
    if every:
        st.selectbox(
            "Open a study",
            list(every),
            None,
            every.get,
            key="compare_study",
            on_change=open_study,
            placeholder="Choose a study",
            help="A comparison with one setting varied (learning rate, training rows or LoRA rank), launched on the "
            "Train page: its chart and its verdicts.",
        )


st.title("Compare")
study_section()
with ui.sessions()() as s:
    done = {r.id: r for r in tables.completed_runs(s)}
    latest = tables.latest_pair(s)
    groups = {g.id: (g, comparisons.group_runs(s, g.id)) for g in comparisons.groups(s)}
ready = {g: comparisons.completed_pairs(runs) for g, (_, runs) in groups.items()}
ready = {g: pairs for g, pairs in ready.items() if pairs}
if len(done) < 2:
    st.info("Compare needs two completed runs. Queue a pair (full fine-tuning + LoRA) on the Train page.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


def forget_unknown_group() -> None:
    """A choice made replaces the address's comparison (which may name none): the page writes the address anew."""
    st.query_params.pop("group", None)


def what_label(choice: int) -> str:
    if choice == PICK:
        return "Runs I pick"
    group, runs = groups[choice]
    finished = f" ({len(ready[choice])} of {group.repeats} pairs done)" if len(ready[choice]) < group.repeats else ""
    return comparisons.group_label(group, runs) + finished


url_group, url_runs = ui.query_ids("group"), ui.query_ids("runs")
options = [*ready, PICK]
unknown = url_group is not None and not (url_group and url_group[0] in ready)
if unknown:  # said as the Runs page says an unknown run; the address stays until another comparison is chosen
    asked = st.query_params["group"]
    if url_group and url_group[0] in groups:
        st.warning(f"Comparison #{asked} has no completed pair yet: its verdict shows once a pair is done.")
    else:
        st.error(f"There is no comparison {asked} (it may have been deleted). Choose one from the list below.")
first = url_group[0] if url_group and url_group[0] in ready else (PICK if url_runs is not None else options[0])
choice = st.selectbox(
    "What to compare",
    options,
    index=options.index(first),
    format_func=what_label,
    key="compare_what",
    on_change=forget_unknown_group,
    help="A comparison launched on the Train page (full fine-tuning and LoRA, once per seed), or runs you pick.",
)
if choice == PICK:
    chosen = st.multiselect(
        "Runs to compare",
        list(done),
        default=[i for i in url_runs or [] if i in done] or latest,
        format_func=lambda i: describe.run_label(done[i]),
        key="compare_runs",
        help="Completed runs; the most recent pair is chosen for you.",
    )
    st.query_params.pop("group", None)
    st.query_params["runs"] = ",".join(map(str, chosen))
    if len(chosen) < 2:
        st.info("Pick at least two runs.")
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
        st.caption(
            f"{len(waiting)} run(s) of this comparison have not completed "
            f"({', '.join(f'#{r.id} {r.status}' for r in waiting)}); the figures below use the pairs that have."
        )

st.subheader("Verdict")
result = lined = None
if not pairs:
    st.info(
        "A verdict needs full fine-tuning and LoRA pairs, or exactly two runs; these runs are neither. "
        "The figures below still compare them."
    )
else:
    try:
        finished = tuple(str(r.finished_at) for pair in pairs for r in pair)
        result, lined = cached_verdict(ui.settings().db_url, tuple((a.id, b.id) for a, b in pairs), finished)
    except comparisons.NotComparable as e:
        st.warning(str(e))
if result is not None:
    verdict_card(result, pairs)

if pairs:
    a_name, b_name = comparisons.side_names(pairs)
    st.subheader(f"What it costs: {b_name} as a multiple of {a_name}")
    ratios = comparisons.cost_ratios(pairs)
    for col, (key, (name, _)) in zip(st.columns(len(verdict.COSTS)), verdict.COSTS.items()):
        ratio = ratios[key]
        col.metric(
            name[0].upper() + name[1:],
            "–" if ratio is None else verdict.ratio_text(ratio.mean),
            help=None
            if ratio is None
            else f"{b_name}'s {name} over {a_name}'s: {ratio.text()}"
            + (f", mean over {len(pairs)} seeds and their range." if len(pairs) > 1 else "."),
        )
    st.markdown(verdict.cost_sentence(ratios, (a_name, b_name)))
    if len(pairs) > 1:
        ranges = "; ".join(f"{verdict.COSTS[k][0]} {r.text()}" for k, r in ratios.items() if r is not None)
        st.caption(f"Means over {len(pairs)} seeds, each with its range: {ranges}.")
    note = describe.times_note(chosen_runs)
    if note:
        st.warning(note)

st.subheader("Test scores and costs")
st.dataframe(comparisons.scores_table(chosen_runs), hide_index=True, key="compare_scores")
st.download_button(
    "Download these scores (CSV)",
    safe_csv(comparisons.scores(chosen_runs)),
    "lora-lab-scores.csv",
    "text/csv",
    key="compare_download_scores",
    help="Opens in Excel; cells that look like formulas are saved as plain text.",
)
st.caption(
    "Model size is the weights saved to disk (for LoRA: the add-ons and the head); the tokenizer saved beside them "
    "is the same for both methods and not counted."
)

if lined is not None:
    st.subheader("Where they differ")
    diff = comparisons.difference_matrix(lined, pairs)
    fig = ui.difference_figure(diff, lined.classes, (a_name, b_name), mean=len(pairs) > 1)
    left, right = st.columns(2)
    left.plotly_chart(fig, key="compare_difference")
    left.caption(
        f"Blue: {b_name} puts more texts in that cell, red: fewer. On the diagonal (right answers) blue favours "
        f"{b_name}; off it (mistakes), red does."
    )
    bars = ui.per_class_f1_figure(comparisons.per_class_f1(chosen_runs), chosen_runs)
    right.plotly_chart(bars, key="compare_f1")

st.subheader("Training curves")
x = st.radio(
    "X-axis",
    list(ui.X_AXES),
    format_func=ui.X_AXES.get,
    key="compare_x",
    horizontal=True,
    help="Examples seen is fairest when the runs used different batch sizes.",
)
with ui.sessions()() as s:
    st.plotly_chart(ui.curves_figure(tables.curves_frame(s, chosen_runs), x), key="compare_curves")

st.subheader("Confusion matrices")
normalised = st.toggle(
    "Show shares of each true class instead of counts",
    key="compare_normalised",
    help="Each row then sums to 100%: how each true class was predicted.",
)
st.caption("Click a cell to list the test texts in it.")


def explain_a_listed_text(listed, runs: list, key: str) -> None:
    """Pick a text of the table above by its row: each run's shaded words, side by side (ui.explain_side_by_side)."""
    if listed.empty:
        return
    rows = listed.reset_index(drop=True)
    pick = st.selectbox(
        "Why? Explain a text",
        range(len(rows)),
        index=None,
        format_func=lambda i: f"row {rows['test row'][i]}: {rows['text'][i]}",
        placeholder="Pick a text of the table to see which words led each run to its answer",
        key=key,
        help="Each run's answer for the text, its words shaded: blue pushed the model toward it, orange away.",
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
    st.markdown(
        f"**{describe.run_label(done[run_id], chosen_runs)}: true {names[true]}, predicted {names[pred]}: "
        f"{len(in_cell)} test text{'' if len(in_cell) == 1 else 's'}**"
    )
    st.dataframe(in_cell, hide_index=True, key="compare_cell_texts")
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

st.subheader("Where they disagree")
try:
    with ui.sessions()() as s:
        disagree = comparisons.disagreements(s, chosen_runs)
except comparisons.NotComparable as e:
    st.warning(str(e))
else:
    st.caption(
        f"{len(disagree)} test texts get different labels from these runs (✓ right, ✗ wrong). Each run's column is "
        "headed by its number, its method and its seed (when the seeds differ)."
    )
    headers = {
        describe.column_label(r, chosen_runs): st.column_config.TextColumn(help=describe.run_label(r))
        for r in chosen_runs
    }
    text = st.column_config.TextColumn(width="medium", help="Hover or widen the column for the whole text.")
    st.dataframe(disagree, hide_index=True, column_config={"text": text, **headers})
    st.download_button(
        "Download these texts (CSV)",
        safe_csv(disagree),
        "lora-lab-disagreements.csv",
        "text/csv",
        key="compare_download_disagreements",
        help="Opens in Excel; cells that look like formulas are saved as plain text.",
    )
    explain_a_listed_text(disagree, chosen_runs, "compare_explain")

"""Runs: the history of every run, and one run's live view (?run=ID in the URL, so a refresh reopens it)."""

import streamlit as st

import ui
from core import artifacts, comparisons, estimate, export, models, runs, views
from core.config import METHOD_NAMES
from core.db import Run, RunStatus

BADGE = {"queued": "gray", "running": "blue", "completed": "green", "failed": "red", "cancelled": "orange"}
POLL_S = 2.0  # how often an active run's view reads the database


def open_run(run_id: int | None = None) -> None:
    """Every way of opening a run sets the URL, so a refresh (or the run ending) keeps showing that run."""
    st.query_params["run"] = str(run_id if run_id is not None else st.session_state.pop("runs_open"))


def close_run() -> None:
    st.query_params.pop("run", None)


def ask_cancel(run_id: int | None) -> None:
    st.session_state["runs_cancel_asked"] = run_id


def cancel(run_id: int) -> None:
    with ui.sessions(write=True)() as s:
        runs.request_cancel(s, run_id)
    ask_cancel(None)
    ui.flash("info", f"Cancel requested: run #{run_id} stops at its next step.")


def status_line(s, run: Run, label: str) -> None:
    """One run of the pair: waiting (for what), training (how far), or how it ended."""
    if run.status == RunStatus.QUEUED.value:
        st.info(f"{label}: {views.queue_text(s, run)}")
        if when := ui.queue_line(run, ui.queue_times()):
            st.caption(when)
    elif run.status == RunStatus.RUNNING.value:
        done, eta = views.progress(run)
        if run.total_steps and run.step >= run.total_steps:
            left = "training finished, scoring the test set"
        else:
            left = "estimating the time left" if eta is None else f"about {ui.duration(eta)} left"
        st.progress(done or 0.0, text=f"{label} · Step {run.step} of {run.total_steps or '?'} · {left}")
    elif run.status == RunStatus.COMPLETED.value:
        accuracy = views.percent((run.test_metrics or {}).get("accuracy"))
        st.success(f"{label}: completed in {ui.duration(run.train_seconds)}, test accuracy {accuracy}.")
    else:
        st.warning(f"{label}: {run.status}.")


def export_buttons(run: Run) -> None:
    """The model as a .zip to take away, made when a button is pressed (it takes a few seconds)."""
    forms = (
        [(False, "Download the model")]
        if run.method == "full"
        else [
            (False, "Download the LoRA adapters"),
            (True, "Download the merged model"),
        ]
    )
    for col, (merged, label) in zip(st.columns(len(forms)), forms):
        col.download_button(
            f"{label} (.zip)",
            lambda merged=merged: export.export_bytes(ui.settings(), run.id, merged),
            file_name=f"{export.export_name(run, merged)}.zip",
            mime="application/zip",
            key=f"runs_export_{'merged' if merged else 'model'}",
            on_click="ignore",
            help="Loads with plain transformers (merged: needs nothing else) or peft (adapters: need the base model); "
            "the README inside says how, with the class names, data and test scores.",
        )


def show_run(run_id: int) -> None:
    st.button("← All runs", key="runs_back", on_click=close_run, help="Back to the history of every run.")
    with ui.sessions()() as s:
        shown = s.get(Run, run_id)
        pair = [shown, *views.partners(s, shown)]
        group = comparisons.group_of(s, shown)
    if group:
        group_id, seeds, done = group
        st.page_link(
            "pages/compare.py",
            label=f"Comparison #{group_id}: this pair is one of {seeds} seeds, {done} done. See the verdict"
            if done
            else f"Comparison #{group_id}: this pair is one of {seeds} seeds; the verdict shows once a pair is done",
            query_params={"group": str(group_id)},
            icon="⚖️",
            disabled=not done,
        )
    was_active = any(not r.run_status.finished for r in pair)
    if not shown.run_status.finished:  # a live view follows the pair to the run that trains next
        st.session_state["runs_following"] = run_id

    @st.fragment(run_every=POLL_S if was_active else None)
    def live() -> None:
        with ui.sessions()() as s:
            run = s.get(Run, run_id)
            if run is None:
                return st.error(f"Run {run_id} was deleted.")
            pair = [run, *views.partners(s, run)]
            curves = views.curves_frame(s, sorted(pair, key=lambda r: r.id))
            active = [r for r in pair if not r.run_status.finished]
            if st.session_state.get("runs_following") == run_id and run.run_status.finished and active:
                st.session_state["runs_following"] = active[0].id
                open_run(active[0].id)  # e.g. full fine-tuning ended and LoRA starts: show LoRA
                st.rerun()
            if was_active and not active:
                st.rerun()  # the pair just ended: redraw the whole page, without polling
            st.subheader(f"{views.run_label(run)}  :{BADGE.get(run.status, 'red')}-badge[{run.status}]")
            created = f"{run.created_at:%Y-%m-%d %H:%M} UTC"
            partner = ", ".join(f"#{r.id} ({views.run_facts(r)['method']})" for r in pair[1:])
            together = f" · trained as a pair with run {partner}" if partner else ""
            st.caption(f"Model {models.describe(run.model_source)} · created {created}{together}")
            for r in sorted(pair, key=lambda r: r.id):
                status_line(s, r, f"Run #{r.id} {views.run_facts(r)['method']}")
        ui.show_flash()
        to_pair, to_compare, to_cancel = st.columns(3)  # one row: the curves stay on a projector's first screen
        for other in pair[1:]:
            to_pair.button(
                f"Open its pair: run #{other.id} ({views.run_facts(other)['method']})",
                key=f"runs_pair_{other.id}",
                on_click=open_run,
                args=(other.id,),
                help="Shows the other run of the pair (its results when it has finished).",
            )
        if len(pair) > 1:
            ids = ",".join(str(r.id) for r in sorted(pair, key=lambda r: r.id))
            waiting = [r for r in pair if r.status != RunStatus.COMPLETED.value]
            if not waiting:
                to_compare.page_link(
                    "pages/compare.py", label="Compare the pair", query_params={"runs": ids}, icon="⚖️"
                )
            elif any(r.run_status.finished for r in waiting):
                names = ", ".join(f"#{r.id} {r.status}" for r in waiting)
                to_compare.caption(f"The pair can be compared when both runs have completed ({names}: resume it).")
            else:
                to_compare.caption("Compare the pair opens here as soon as both runs have completed.")
        if not run.run_status.finished:
            if st.session_state.get("runs_cancel_asked") == run_id:
                st.warning(
                    f"Stop run #{run_id} now? What it learnt so far is kept only up to its last checkpoint "
                    "(saved every 2 minutes), from which it can resume."
                )
                c1, c2 = st.columns(2)
                c1.button(
                    "Yes, stop the run", key="runs_cancel_yes", on_click=cancel, args=(run_id,), help="Stops it now."
                )
                c2.button("No, let it train", key="runs_cancel_no", on_click=ask_cancel, args=(None,), help="Goes on.")
            else:
                to_cancel.button(
                    "Cancel this run…",
                    key="runs_cancel",
                    on_click=ask_cancel,
                    args=(run_id,),
                    help="Asks first; then stops it within a few seconds.",
                )
        if run.status in (RunStatus.FAILED.value, RunStatus.CRASHED.value):
            st.error(run.error or "The run ended without saying why. Launch it again from the Train page.")
        elif run.status == RunStatus.CANCELLED.value:
            st.warning("This run was cancelled. Curves logged before that are kept.")
        elif run.status == RunStatus.COMPLETED.value:
            test = run.test_metrics or {}
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Test accuracy", views.percent(test.get("accuracy")), help=views.GLOSSARY["accuracy"])
            c2.metric("Test macro-F1", views.percent(test.get("f1_macro")), help=views.GLOSSARY["macro-F1"])
            c3.metric("Training time", ui.duration(run.train_seconds))
            c4.metric("Trained weights", views.count(run.trainable_params), help=views.GLOSSARY["trainable weights"])
            if checked := ui.estimate_vs_measured(run):
                st.caption(checked)
            export_buttons(run)
        note = views.times_note([r for r in pair if r.train_seconds is not None])
        if note:
            st.warning(note, icon=":material/speed:")
        step = runs.resume_step(ui.settings(), run)
        trained = step is not None and artifacts.trained_model(ui.settings(), run) is not None
        if step is not None and st.button(
            "Resume with test scoring" if trained else f"Resume from step {step}",
            key="runs_resume",
            type="primary",
            help="Its training had finished and its model is saved: scores the test set, and trains nothing again."
            if trained
            else "Goes on from the run's last checkpoint, in this same history. Steps after it are trained again.",
        ):
            try:
                with ui.sessions(write=True)() as s:
                    runs.resume_run(s, ui.settings(), run_id)
            except ValueError as e:  # resumed or deleted meanwhile, from another tab
                return st.error(str(e))
            st.rerun()  # queued again: the whole page follows it live
        if curves.empty:
            st.caption("Curves appear after the first logged steps.")
        else:
            x_max = max((r.total_steps or 0) for r in pair) or None  # fixed: the axis does not rescale as it trains
            st.plotly_chart(ui.curves_figure(curves, x_max=x_max), key="runs_curves")
            st.caption(ui.glossary("dev set"))
        for note in run.notes or []:
            st.caption(note)
        with st.expander("Settings of this run"):
            st.dataframe(views.settings_frame(run), hide_index=True, key="runs_settings")

    live()


st.title("Runs")
wanted = ui.query_ids("run")
with ui.sessions()() as s:
    found = views.runs_by_id(s, wanted[:1]) if wanted else []
if found:
    show_run(found[0].id)
    st.stop()
if wanted is not None:
    st.error(f"There is no run {st.query_params['run']} (it may have been deleted). Choose one from the list below.")

with ui.sessions()() as s:
    every = views.all_runs(s)
    active = views.any_active(s)
names = {r.id: views.run_label(r) for r in every}
if not names:
    st.info("No runs yet. Queue one on the Train page; it will appear here with live curves.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()
st.selectbox(
    "Open a run",
    list(names),
    None,
    names.get,
    key="runs_open",
    on_change=open_run,
    placeholder="Choose a run",
    help="Shows its live curves, progress and result.",
)
c1, c2, c3 = st.columns(3)
statuses = c1.multiselect("Status", [s.value for s in RunStatus], key="runs_status", help="Show only these.")
methods = c2.multiselect(
    "Method", list(METHOD_NAMES), format_func=METHOD_NAMES.get, key="runs_method", help="Show only these."
)
datasets = c3.multiselect(
    "Dataset", sorted({r.dataset_name for r in every}), key="runs_dataset", help="Show only these."
)


@st.fragment(run_every=POLL_S if active else None)
def history() -> None:
    with ui.sessions()() as s:
        table = views.history_frame(s, statuses, methods, datasets)
        table = estimate.with_estimates(table, views.all_runs(s), ui.queue_times())
        if views.any_active(s) != active:
            st.rerun()  # something started or ended: poll, or stop polling
    created = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
    config = {
        "machine while training": st.column_config.TextColumn(
            help="Times measured while other programs kept the machine busy are not comparable."
        ),
        "created (UTC)": created,
        "expected start (UTC)": st.column_config.DatetimeColumn(format="HH:mm"),
        "expected end (UTC)": st.column_config.DatetimeColumn(format="HH:mm"),
    }
    formats = {"test accuracy": "{:.1f} %", "macro-F1": "{:.1f} %", "trainable params": "{:,.0f}"}
    formats |= dict.fromkeys(("train time (s)", "estimated train (s)"), "{:.1f}")
    formats |= dict.fromkeys(("peak memory (MB)", "estimated peak (MB)"), "{:.0f}")
    st.dataframe(ui.blank_missing(table, formats), hide_index=True, column_config=config, key="runs_table")


history()

with ui.sessions()() as s:
    compared = comparisons.groups_frame(s)
if not compared.empty:
    st.subheader("Comparisons")
    st.caption("Full fine-tuning and LoRA launched together, once per seed: each comparison is one row.")
    verdict_link = st.column_config.LinkColumn(display_text="see the verdict", help="Opens it on Compare.")
    st.dataframe(compared, hide_index=True, column_config={"verdict": verdict_link}, key="runs_comparisons")

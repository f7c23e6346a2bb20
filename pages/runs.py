"""Runs: the history of every run, and one run's live view (?run=ID in the URL, so a refresh reopens it)."""

import streamlit as st

import ui
from core import models, runs, views
from core.config import METHOD_NAMES
from core.db import Run, RunStatus

BADGE = {"queued": "gray", "running": "blue", "completed": "green", "failed": "red", "cancelled": "orange"}
POLL_S = 2.0  # how often an active run's view reads the database


def open_run() -> None:
    st.query_params["run"] = str(st.session_state.pop("runs_open"))


def close_run() -> None:
    st.query_params.pop("run", None)


def show_run(run_id: int) -> None:
    st.button("← All runs", key="runs_back", on_click=close_run, help="Back to the history of every run.")
    with ui.sessions()() as s:
        was_active = not s.get(Run, run_id).run_status.finished
        pair = [run_id] + [r.id for r in views.partners(s, s.get(Run, run_id))]
    for other in pair[1:]:
        st.page_link("pages/runs.py", label=f"Its pair: run #{other}", query_params={"run": str(other)})
    if len(pair) > 1 and not was_active:
        st.page_link(
            "pages/compare.py", label="Compare the pair", query_params={"runs": ",".join(map(str, sorted(pair)))}
        )

    @st.fragment(run_every=POLL_S if was_active else None)
    def live() -> None:
        with ui.sessions()() as s:
            run = s.get(Run, run_id)
            if run is None:
                return st.error(f"Run {run_id} was deleted.")
            curves = views.curves_frame(s, [run])
        if was_active and run.run_status.finished:
            st.rerun()  # it just ended: redraw the whole page, without polling
        st.subheader(f"{views.run_label(run)}  :{BADGE.get(run.status, 'red')}-badge[{run.status}]")
        created = f"{run.created_at:%Y-%m-%d %H:%M} UTC"
        st.caption(f"Model {models.describe(run.model_source)} · created {created} · pair {run.pair_id or '-'}")
        done, eta = views.progress(run)
        if run.status == RunStatus.QUEUED.value:
            st.info("Waiting for the trainer: runs train one at a time, in the order they were queued.")
        elif run.status == RunStatus.RUNNING.value:
            left = "estimating the time left" if eta is None else f"about {ui.duration(eta)} left"
            text = f"Step {run.step} of {run.total_steps or '?'} · {left}"
            st.progress(done or 0.0, text=text)
        if was_active and st.button("Cancel this run", key="runs_cancel", help="Stops it within a few seconds."):
            with ui.sessions(write=True)() as s:
                runs.request_cancel(s, run_id)
            st.info("Cancel requested: the run stops at its next step.")
        if run.status in (RunStatus.FAILED.value, RunStatus.CRASHED.value):
            st.error(run.error or "The run ended without saying why. Launch it again from the Train page.")
        elif run.status == RunStatus.CANCELLED.value:
            st.warning("This run was cancelled. Curves logged before that are kept.")
        elif run.status == RunStatus.COMPLETED.value:
            test = run.test_metrics or {}
            c1, c2, c3, c4 = st.columns(4)
            c1.metric("Test accuracy", f"{test.get('accuracy', 0):.1%}")
            c2.metric("Test macro-F1", f"{test.get('f1_macro', 0):.3f}")
            c3.metric("Training time", ui.duration(run.train_seconds))
            c4.metric("Trained weights", f"{run.trainable_params or 0:,}")
        step = runs.resume_step(ui.settings(), run)
        if step is not None and st.button(
            f"Resume from step {step}",
            key="runs_resume",
            type="primary",
            help="Goes on from the run's last checkpoint, in this same history. Steps after it are trained again.",
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
            st.plotly_chart(ui.curves_figure(curves), key="runs_curves")
        for note in run.notes or []:
            st.caption(note)
        with st.expander("Settings of this run"):
            st.json(run.config)

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
        if views.any_active(s) != active:
            st.rerun()  # something started or ended: poll, or stop polling
    percent = st.column_config.NumberColumn(format="percent")
    created = st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm")
    config = {
        "test accuracy": percent,
        "macro-F1": st.column_config.NumberColumn(format="%.3f"),
        "train time (s)": st.column_config.NumberColumn(format="%.1f"),
        "trainable params": st.column_config.NumberColumn(format="localized"),
        "created (UTC)": created,
    }
    st.dataframe(table, hide_index=True, column_config=config, key="runs_table")


history()

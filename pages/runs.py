"""Runs: the history of every run, and one run's live view (?run=ID in the URL, so a refresh reopens it)."""

import streamlit as st

import ui
from core import words
from core.i18n import _
from core.jobs import queue, runs
from core.results import comparisons, describe, export, tables
from core.results import studies as study_results
from core.store import storage
from core.store.db import Run, RunStatus
from core.training import artifacts, models
from core.training.config import METHOD_NAMES

ui.speak()  # the visitor's language (core.i18n), before any word of the page

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
    ui.speak()  # a callback runs before the page's first line
    with ui.sessions(write=True)() as s:
        runs.request_cancel(s, run_id)
    ask_cancel(None)
    ui.flash("info", _("Cancel requested: run #{run} stops at its next step.", run=run_id))


@st.cache_data(ttl=10, show_spinner=False)
def disk_use(db_url: str) -> storage.DiskUse:
    """The disk the history's files take (a walk of the data folder), read at most every 10 s per database; a delete
    clears it."""
    with ui.sessions()() as s:
        return storage.disk_use(s, ui.settings())


def ask_delete(choice: str | None) -> None:
    st.session_state["runs_delete_asked"] = choice


def delete(run_ids: list[int]) -> None:
    ui.speak()  # a callback runs before the page's first line
    ask_delete(None)
    with ui.sessions(write=True)() as s:
        try:
            done = storage.delete_runs(s, ui.settings(), run_ids)
        except storage.DeleteRefused as e:  # one was resumed, or a file queued with it, since the question
            return ui.flash("warning", _("Nothing was deleted. {why}", why=e))
    disk_use.clear()
    st.session_state["runs_delete_choice"] = None  # it is gone from the list
    names, freed = ", ".join(f"#{i}" for i in done.run_ids), words.size_text(done.bytes)
    if len(done.run_ids) == 1:
        ui.flash("success", _("Deleted run {names} with its files; {freed} freed.", names=names, freed=freed))
    else:
        ui.flash("success", _("Deleted runs {names} with their files; {freed} freed.", names=names, freed=freed))


def delete_section() -> None:
    """The disk the history takes, and deleting a run or a whole comparison with its files, after one question."""
    st.subheader(_("Disk and deleting"))
    ui.show_flash()
    use = disk_use(ui.settings().db_url)
    with ui.sessions()() as s:
        choices = {**study_results.delete_choices(s, use.runs), **comparisons.delete_choices(s, use.runs)}
    st.caption(storage.disk_text(use))
    if leftovers := storage.leftovers_text(use, ui.settings()):
        st.caption(leftovers)
    chosen = st.selectbox(
        _("Delete a run, a whole comparison or a whole study"),
        list(choices),
        None,
        lambda key: choices[key][0],
        key="runs_delete_choice",
        placeholder=_("Choose one"),
        help=_("Its curves, results, checkpoints, model and the files labelled with it are removed."),
    )
    if chosen is None:
        return
    with ui.sessions()() as s:
        plan = storage.plan_deletion(s, ui.settings(), choices[chosen][1])
    if plan.refused:
        return st.warning(" ".join(plan.refused))
    if st.session_state.get("runs_delete_asked") != chosen:
        st.button(
            _("Delete it…"), key="runs_delete", on_click=ask_delete, args=(chosen,), help=_("Asks first; no undo.")
        )
        return
    st.warning(storage.deletion_text(plan))
    c1, c2 = st.columns(2)
    c1.button(_("Yes, delete"), key="runs_delete_yes", on_click=delete, args=(plan.run_ids,), help=_("No undo."))
    c2.button(_("No, keep it"), key="runs_delete_no", on_click=ask_delete, args=(None,), help=_("Nothing is removed."))


def status_line(s, run: Run, label: str) -> None:
    """One run of the pair: waiting (for what), training (how far), or how it ended."""
    if run.status == RunStatus.QUEUED.value:
        st.info(_("{run}: {waiting}", run=label, waiting=tables.queue_text(s, run)))
        if when := ui.queue_line(run, ui.queue_times()):
            st.caption(when)
    elif run.status == RunStatus.RUNNING.value:
        done, eta = tables.progress(run)
        if run.total_steps and run.step >= run.total_steps:
            left = _("training finished, scoring the test set")
        elif eta is None:
            left = _("estimating the time left")
        else:
            left = _("about {time} left", time=words.duration_text(eta))
        steps = _("Step {step} of {total}", step=run.step, total=run.total_steps or "?")
        st.progress(done or 0.0, text=f"{label} · {steps} · {left}")
    elif run.status == RunStatus.COMPLETED.value:
        accuracy = words.percent((run.test_metrics or {}).get("accuracy"))
        st.success(
            _(
                "{run}: completed in {time}, test accuracy {accuracy}.",
                run=label,
                time=words.duration_text(run.train_seconds),
                accuracy=accuracy,
            )
        )
    else:
        st.warning(_("{run}: {status}.", run=label, status=tables.status_text(run.status)))


def export_buttons(run: Run) -> None:
    """The model as a .zip to take away, made when a button is pressed (it takes a few seconds)."""
    forms = (
        [(False, _("Download the model (.zip)"))]
        if run.method == "full"
        else [
            (False, _("Download the LoRA adapters (.zip)")),
            (True, _("Download the merged model (.zip)")),
        ]
    )
    for col, (merged, label) in zip(st.columns(len(forms)), forms):
        col.download_button(
            label,
            lambda merged=merged: export.export_bytes(ui.settings(), run.id, merged),
            file_name=f"{export.export_name(run, merged)}.zip",
            mime="application/zip",
            key=f"runs_export_{'merged' if merged else 'model'}",
            on_click="ignore",
            help=_(
                "Loads with plain transformers (merged: needs nothing else) or peft (adapters: need the base model); "
                "the README inside says how, with the class names, data and test scores."
            ),
        )


def show_run(run_id: int) -> None:
    st.button(_("← All runs"), key="runs_back", on_click=close_run, help=_("Back to the history of every run."))
    with ui.sessions()() as s:
        shown = s.get(Run, run_id)
        pair = [shown, *tables.partners(s, shown)]
        group = comparisons.group_of(s, shown)
        study = shown.study and (shown.study.id, study_results.point_text(shown.study.vary, shown))
    if group:
        group_id, seeds, done = group
        st.page_link(
            "pages/compare.py",
            label=_(
                "Comparison #{group}: this pair is one of {seeds} seeds, {done} done. See the verdict",
                group=group_id,
                seeds=seeds,
                done=done,
            )
            if done
            else _(
                "Comparison #{group}: this pair is one of {seeds} seeds; the verdict shows once a pair is done",
                group=group_id,
                seeds=seeds,
            ),
            query_params={"group": str(group_id)},
            icon="⚖️",
            disabled=not done,
        )
    if study:
        st.page_link(
            "pages/compare.py",
            label=_(
                "Study #{study}: this run is one of its points ({point}). See its chart",
                study=study[0],
                point=study[1],
            ),
            query_params={"study": str(study[0])},
            icon=":material/monitoring:",
        )
    was_active = any(not r.run_status.finished for r in pair)
    if not shown.run_status.finished:  # a live view follows the pair to the run that trains next
        st.session_state["runs_following"] = run_id

    @st.fragment(run_every=POLL_S if was_active else None)
    def live() -> None:
        ui.speak()  # a fragment's rerun runs alone, in a thread of its own
        with ui.sessions()() as s:
            run = s.get(Run, run_id)
            if run is None:
                return st.error(_("Run {run} was deleted.", run=run_id))
            pair = [run, *tables.partners(s, run)]
            curves = tables.curves_frame(s, sorted(pair, key=lambda r: r.id))
            active = [r for r in pair if not r.run_status.finished]
            if st.session_state.get("runs_following") == run_id and run.run_status.finished and active:
                st.session_state["runs_following"] = active[0].id
                open_run(active[0].id)  # e.g. full fine-tuning ended and LoRA starts: show LoRA
                st.rerun()
            if was_active and not active:
                st.rerun()  # the pair just ended: redraw the whole page, without polling
            status = tables.status_text(run.status)
            st.subheader(f"{describe.run_label(run)}  :{BADGE.get(run.status, 'red')}-badge[{status}]")
            created = ui.clock(run.created_at, with_date=True)
            partner = ", ".join(f"#{r.id} ({describe.run_facts(r)['method']})" for r in pair[1:])
            model = models.describe(run.model_source)
            if partner:
                st.caption(
                    _(
                        "Model {model} · created {created} · trained as a pair with run {partner}",
                        model=model,
                        created=created,
                        partner=partner,
                    )
                )
            else:
                st.caption(_("Model {model} · created {created}", model=model, created=created))
            for r in sorted(pair, key=lambda r: r.id):
                status_line(s, r, _("Run #{run} {method}", run=r.id, method=describe.run_facts(r)["method"]))
        ui.show_flash()
        to_pair, to_compare, to_cancel = st.columns(3)  # one row: the curves stay on a projector's first screen
        for other in pair[1:]:
            to_pair.button(
                _("Open its pair: run #{run} ({method})", run=other.id, method=describe.run_facts(other)["method"]),
                key=f"runs_pair_{other.id}",
                on_click=open_run,
                args=(other.id,),
                help=_("Shows the other run of the pair (its results when it has finished)."),
            )
        if len(pair) > 1:
            ids = ",".join(str(r.id) for r in sorted(pair, key=lambda r: r.id))
            waiting = [r for r in pair if r.status != RunStatus.COMPLETED.value]
            if not waiting:
                to_compare.page_link(
                    "pages/compare.py", label=_("Compare the pair"), query_params={"runs": ids}, icon="⚖️"
                )
            elif any(r.run_status.finished for r in waiting):
                names = _(", ").join(f"#{r.id} {tables.status_text(r.status)}" for r in waiting)
                to_compare.caption(
                    _("The pair can be compared when both runs have completed ({runs}: resume it).", runs=names)
                )
            else:
                to_compare.caption(_("Compare the pair opens here as soon as both runs have completed."))
        if not run.run_status.finished:
            if st.session_state.get("runs_cancel_asked") == run_id:
                if artifacts.trained_model(ui.settings(), run) is not None:
                    kept = _("Its training has finished and its model is saved: it can resume with test scoring.")
                elif seconds := ui.settings().checkpoint_every_s:
                    kept = _(
                        "What it learnt so far is kept up to its last checkpoint (saved every {time}): it can resume.",
                        time=words.duration_text(seconds),
                    )
                else:
                    kept = _(
                        "What it learnt so far is kept up to its last checkpoint (saved at every logged step): it can "
                        "resume."
                    )
                st.warning(_("Stop run #{run} now? {kept}", run=run_id, kept=kept))
                c1, c2 = st.columns(2)
                stop = _("Yes, stop the run")
                c1.button(stop, key="runs_cancel_yes", on_click=cancel, args=(run_id,), help=_("Stops it now."))
                c2.button(
                    _("No, let it train"), key="runs_cancel_no", on_click=ask_cancel, args=(None,), help=_("Goes on.")
                )
            else:
                to_cancel.button(
                    _("Cancel this run…"),
                    key="runs_cancel",
                    on_click=ask_cancel,
                    args=(run_id,),
                    help=_("Asks first; then stops it within a few seconds."),
                )
        if run.status in (RunStatus.FAILED.value, RunStatus.CRASHED.value):
            st.error(run.error or _("The run ended without saying why. Launch it again from the Train page."))
        elif run.status == RunStatus.CANCELLED.value:
            st.warning(_("This run was cancelled. Curves logged before that are kept."))
        elif run.status == RunStatus.COMPLETED.value:
            test = run.test_metrics or {}
            c1, c2, c3, c4 = st.columns(4)
            c1.metric(_("Test accuracy"), words.percent(test.get("accuracy")), help=ui.glossary("accuracy"))
            c2.metric(_("Test macro-F1"), words.percent(test.get("f1_macro")), help=ui.glossary("macro-F1"))
            c3.metric(_("Training time"), words.duration_text(run.train_seconds))
            c4.metric(
                _("Trained weights"),
                words.count(run.trainable_params),
                help=ui.glossary("trainable weights"),
            )
            if checked := ui.estimate_vs_measured(run):
                st.caption(checked)
            export_buttons(run)
        note = describe.times_note([r for r in pair if r.train_seconds is not None])
        if note:
            st.warning(note, icon=":material/speed:")
        step = runs.resume_step(ui.settings(), run)
        trained = step is not None and artifacts.trained_model(ui.settings(), run) is not None
        if step is not None and st.button(
            _("Resume with test scoring") if trained else _("Resume from step {step}", step=step),
            key="runs_resume",
            type="primary",
            help=_("Its training had finished and its model is saved: scores the test set, and trains nothing again.")
            if trained
            else _("Goes on from the run's last checkpoint, in this same history. Steps after it are trained again."),
        ):
            try:
                with ui.sessions(write=True)() as s:
                    runs.resume_run(s, ui.settings(), run_id)
            except ValueError as e:  # resumed or deleted meanwhile, from another tab
                return st.error(str(e))
            st.rerun()  # queued again: the whole page follows it live
        if curves.empty:
            st.caption(_("Curves appear after the first logged steps."))
        else:
            x_max = max((r.total_steps or 0) for r in pair) or None  # fixed: the axis does not rescale as it trains
            st.plotly_chart(ui.curves_figure(curves, x_max=x_max), key="runs_curves")
            st.caption(ui.glossary("dev set"))
        for note in run.notes or []:
            st.caption(note)
        with st.expander(_("Settings of this run")):
            st.dataframe(describe.settings_frame(run), hide_index=True, key="runs_settings")

    live()


st.title(_("Runs"))
wanted = ui.query_ids("run")
with ui.sessions()() as s:
    found = tables.runs_by_id(s, wanted[:1]) if wanted else []
if found:
    show_run(found[0].id)
    st.stop()
if wanted is not None:
    st.error(
        _(
            "There is no run {run} (it may have been deleted). Choose one from the list below.",
            run=st.query_params["run"],
        )
    )

with ui.sessions()() as s:
    every = tables.all_runs(s)
    active = tables.any_active(s)
names = {r.id: describe.run_label(r) for r in every}
if not names:
    st.info(_("No runs yet. Queue one on the Train page; it will appear here with live curves."))
    st.page_link("pages/train.py", label=_("Go to Train"), icon=":material/model_training:")
    st.stop()
st.selectbox(
    _("Open a run"),
    list(names),
    None,
    names.get,
    key="runs_open",
    on_change=open_run,
    placeholder=_("Choose a run"),
    help=_("Shows its live curves, progress and result."),
)
c1, c2, c3 = st.columns(3)
statuses = c1.multiselect(
    _("Status"),
    [s.value for s in RunStatus],
    format_func=tables.status_text,
    key="runs_status",
    help=_("Show only these."),
)
methods = c2.multiselect(
    _("Method"),
    list(METHOD_NAMES),
    format_func=lambda method: _(METHOD_NAMES[method]),
    key="runs_method",
    help=_("Show only these."),
)
datasets = c3.multiselect(
    _("Dataset"), sorted({r.dataset_name for r in every}), key="runs_dataset", help=_("Show only these.")
)


@st.fragment(run_every=POLL_S if active else None)
def history() -> None:
    ui.speak()  # a fragment's rerun runs alone, in a thread of its own
    with ui.sessions()() as s:
        table = tables.history_frame(s, statuses, methods, datasets)
        table = queue.with_estimates(table, tables.all_runs(s), ui.queue_times())
        table = study_results.with_studies(s, table)
        if tables.any_active(s) != active:
            st.rerun()  # something started or ended: poll, or stop polling
    table, config = ui.local_times(table, {"created": True, "expected start": False, "expected end": False})
    config["machine while training"] = st.column_config.TextColumn(
        help=_("Times measured while other programs kept the machine busy are not comparable.")
    )
    formats = dict.fromkeys(("test accuracy", "macro-F1"), lambda points: words.percent(points / 100))
    whole = ("trainable params", "peak memory (MB)", "estimated peak (MB)")
    formats |= dict.fromkeys(whole, lambda n: words.count(round(n)))
    table = ui.blank_missing(table, formats)
    ui.dataframe(table, config, key="runs_table")


history()

with ui.sessions()() as s:
    compared = comparisons.groups_frame(s)
if not compared.empty:
    st.subheader(_("Comparisons"))
    st.caption(_("Full fine-tuning and LoRA launched together, once per seed: each comparison is one row."))
    verdict_link = st.column_config.LinkColumn(display_text=_("see the verdict"), help=_("Opens it on Compare."))
    ui.dataframe(compared, {"verdict": verdict_link}, key="runs_comparisons")

with ui.sessions()() as s:
    studied = study_results.studies_frame(s)
if not studied.empty:
    st.subheader(_("Studies"))
    st.caption(
        _(
            "A comparison with one setting varied (learning rate, training rows or LoRA rank): each study is one row; "
            "its runs are in the list above."
        )
    )
    study_link = st.column_config.LinkColumn(display_text=_("open its chart"), help=_("Opens it on Compare."))
    ui.dataframe(studied, {"open": study_link}, key="runs_studies")

delete_section()

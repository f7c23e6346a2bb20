"""Predict: type a text and see each chosen run's label, class probabilities and which words led to it, the runs side
by side; or label a whole file of texts."""

import plotly.express as px
import streamlit as st

import ui
from core import words
from core.data import reading
from core.i18n import _, ngettext
from core.results import describe, labels, tables
from core.store.db import LabelJob, Run, RunStatus
from core.training import coverage, models, predict

ui.speak()  # the visitor's language (core.i18n), before any word of the page

POLL_S = 1.0  # how often a labelling job's progress is read


@st.cache_data(max_entries=32, show_spinner=False)
def trained_scripts(db_url: str, run_id: int):
    """Letters per script in the run's texts, to tell a text in another language."""
    with ui.sessions()() as s:
        return coverage.run_scripts(s, run_id)


@st.cache_data(max_entries=32, show_spinner=False)
def trained_languages(db_url: str, run_id: int):
    """Texts per language among the run's texts, to tell a text in another language of the same script."""
    with ui.sessions()() as s:
        return coverage.run_languages(s, run_id)


def label_job_view(job_id: int) -> None:
    """The file's progress while the worker labels it, then its download."""
    with ui.sessions()() as s:
        active = (job := s.get(LabelJob, job_id)) is not None and not RunStatus(job.status).finished

    @st.fragment(run_every=POLL_S if active else None)
    def progress() -> None:
        ui.speak()  # a fragment's rerun runs alone, in a thread of its own
        with ui.sessions()() as s:
            job = s.get(LabelJob, job_id)
        if job is None:
            return
        if active and RunStatus(job.status).finished:
            st.rerun()  # it just ended: show the download, without polling
        if job.status == RunStatus.QUEUED.value:
            st.info(
                _(
                    "{file}: waiting for the background worker (it finishes the run it is training first).",
                    file=job.file_name,
                )
            )
        elif job.status == RunStatus.RUNNING.value:
            done = job.rows_done / max(job.rows_total, 1)
            st.progress(
                done,
                text=_(
                    "{file}: {done} of {total} rows labelled",
                    file=job.file_name,
                    done=words.count(job.rows_done),
                    total=words.count(job.rows_total),
                ),
            )
        elif job.status == RunStatus.COMPLETED.value:
            output = labels.output_path(ui.settings(), job)
            if not output.exists():
                st.error(
                    _("The labelled {file} is no longer in the data folder: label the file again.", file=job.file_name)
                )
                return
            st.caption(_("{file}, labelled. The first rows:", file=job.file_name))
            st.dataframe(labels.preview(output), hide_index=True, key="label_result_preview")
            st.download_button(
                _(
                    "Download {file} ({rows} rows)",
                    file=labels.download_name(job),
                    rows=words.count(job.rows_total),
                ),
                output.read_bytes,  # read when the button is pressed, not at every rerun
                file_name=labels.download_name(job),
                mime="text/csv",
                type="primary",
                key="label_download",
                help=_(
                    "Every column of your file, then each run's label and its probability, named by the run's "
                    "number, method and seed (#12 LoRA · seed 42). Opens in a spreadsheet."
                ),
            )
        else:
            st.error(_("{file} could not be labelled: {error}", file=job.file_name, error=job.error))

    progress()


def label_file_tab(done: dict[int, Run], default: list[int]) -> None:
    upload = st.file_uploader(
        _("File of texts"),
        type=["csv", "txt", "tsv"],
        key="label_file",
        help=_("A CSV (pick its text column; UTF-8, GBK or UTF-16) or a .txt file with one text a line."),
    )
    if upload is not None:
        file = reading.SplitFile(upload.name, upload.getvalue())
        try:
            text_file = reading.read_text_file(file, ui.settings())
        except reading.DataError as e:
            return ui.problems(_("{file} cannot be read:", file=upload.name), e.problems)
        columns = [str(c) for c in text_file.frame.columns]
        st.caption(
            _(
                "{rows} rows, read as {encoding}. The first rows:",
                rows=words.count(len(text_file.frame)),
                encoding=text_file.encoding,
            )
        )
        st.dataframe(text_file.frame.head(5), hide_index=True, key="label_preview")
        column = st.selectbox(
            _("Text column"),
            columns,
            index=columns.index(labels.guess_text_column(text_file.frame)),
            key="label_column",
            help=_("The column that holds the texts to label; every column is kept in the result."),
        )
        chosen = st.multiselect(
            _("Runs"),
            list(done),
            default=default,
            format_func=lambda i: describe.run_label(done[i]),
            key="label_runs",
            help=_("Each chosen run adds its label and probability columns."),
        )
        every = st.checkbox(_("Every class's probability too"), key="label_all_probabilities")
        if st.button(_("Label the file"), key="label_start", type="primary", disabled=not chosen):
            try:
                with ui.sessions(write=True)() as s:
                    st.session_state["label_job"] = labels.submit(s, ui.settings(), file, chosen, column, every).id
                ui.keep_worker_running()
            except reading.DataError as e:
                ui.problems(_("{file} cannot be labelled:", file=upload.name), e.problems)
            except predict.RunNotReady as e:
                st.error(str(e))
    if "label_job" in st.session_state:
        label_job_view(st.session_state["label_job"])


st.title(_("Predict"))
with ui.sessions()() as s:
    done = {r.id: r for r in tables.completed_runs(s)}
    latest = tables.latest_pair(s)
if not done:
    st.info(_("No run has finished yet. Train one first; its model then answers here."))
    st.page_link("pages/train.py", label=_("Go to Train"), icon=":material/model_training:")
    st.stop()

ui.explainer(ui.settings().db_url)  # its process starts now (imports take seconds), ready when a text is typed
typed, whole_file = st.tabs([_("Type a text"), _("Label a file")])
with whole_file:
    label_file_tab(done, latest or list(done)[:1])

with typed:
    chosen = st.multiselect(
        _("Runs"),
        list(done),
        default=latest or list(done)[:1],
        format_func=lambda i: describe.run_label(done[i]),
        key="predict_runs",
        help=_("Each chosen run's model gives its own answer."),
    )
    text = st.text_area(
        _("Text"),
        key="predict_text",
        placeholder=_("e.g. Stocks rally as the central bank cuts rates"),
        help=_("Any sentence in the language of your data."),
    )
    st.button(_("Predict"), key="predict_button", type="primary", help=_("Or press Ctrl+Enter in the text box."))
    if not text.strip() or not chosen:
        st.caption(_("Type a text and pick at least one run to see the answers."))
        st.stop()  # the file tab is drawn already

    height = 80 + 30 * max(len((done[i].test_metrics or {}).get("classes") or [0]) for i in chosen)  # one size for all
    columns, targets = {}, {}  # the runs that answered: their column, and the class whose words are shaded
    for start in range(0, len(chosen), 3):
        for col, run_id in zip(st.columns(3), chosen[start : start + 3]):
            col.markdown(f"**{describe.run_label(done[run_id], [done[i] for i in chosen])}**")
            try:
                model = ui.predictor(ui.settings().db_url, run_id)
                label, probs = model.predict(text)
                seen = model.reading(text)
            except (predict.RunNotReady, models.ModelSourceError, OSError, ValueError) as e:
                col.error(_("This run's model could not be loaded: {error}", error=e))
                continue
            chance, sure = 1 / len(probs), predict.sure_from(len(probs))
            unsure = probs[label] < sure
            col.metric(
                _("Uncertain: its best guess") if unsure else _("Predicted label"),
                label,
                _(
                    "{probability} probability · guessing: {chance}",
                    probability=words.percent(probs[label]),
                    chance=words.percent(chance),
                ),
                delta_color="off",
                delta_arrow="off",
                help=ngettext(
                    "With {n} class, a blind guess is right {chance} of the time. An answer under {sure} (halfway "
                    "from guessing to certain) is drawn as uncertain.",
                    "With {n} classes, a blind guess is right {chance} of the time. An answer under {sure} (halfway "
                    "from guessing to certain) is drawn as uncertain.",
                    len(probs),
                    chance=words.percent(chance),
                    sure=words.percent(sure),
                ),
            )
            if unsure:
                col.caption(
                    _(
                        "{probability} is under {sure}, halfway from a blind guess ({chance}) to certain. The model "
                        "leans to '{label}' but does not know.",
                        probability=words.percent(probs[label]),
                        sure=words.percent(sure),
                        chance=words.percent(chance),
                        label=label,
                    )
                )
            fig = px.bar(
                x=list(probs.values()), y=list(probs), orientation="h", labels={"x": _("probability"), "y": ""}
            )
            if unsure:
                fig.update_traces(marker_color="lightgrey")  # no answer drawn large and bright when there is none
            fig.update_traces(texttemplate="%{x:.1%}", textposition="outside", cliponaxis=False)
            fig.add_vline(x=chance, line_dash="dot", line_color="grey")  # guessing, as the metric above says
            fig.update_layout(height=height, margin={"t": 20, "b": 10, "r": 40})
            fig.update_xaxes(range=[0, 1], tickformat=".0%")
            fig.update_yaxes(
                type="category", autorange="reversed"
            )  # class names are names, even when they are numbers
            col.plotly_chart(fig, key=f"predict_chart_{run_id}")
            if seen["tokens"] > seen["read"]:
                col.warning(
                    _(
                        "This text is {tokens} tokens long; the model reads only the first {read} (the run's max "
                        "length) and ignores the rest.",
                        tokens=words.count(seen["tokens"]),
                        read=seen["read"],
                    )
                )
            foreign = coverage.other_script(text, trained_scripts(ui.settings().db_url, run_id))
            foreign = foreign or coverage.other_language(text, trained_languages(ui.settings().db_url, run_id))
            if foreign:
                col.warning(foreign)
            elif seen["unknown_share"] >= coverage.POOR_SHARE:
                col.warning(
                    _(
                        "{share} of this text's tokens are unknown to this model, so its answer means little: is the "
                        "text in a language the model never learnt? The Train page names the models on this machine "
                        "that read it.",
                        share=words.percent(seen["unknown_share"]),
                    )
                )
            columns[run_id] = col
            targets[run_id] = col.selectbox(
                _("Which words led to"),
                [None, *probs],
                format_func=lambda c, label=label: _("{label} (its answer)", label=label) if c is None else c,
                key=f"predict_explain_{run_id}",
                help=_("The text below is shaded for this class: which words pushed the model toward it, which away."),
            )

    found = ui.explained(list(columns), text, targets)  # every column on one scale, so shades compare across runs
    scale = ui.shared_scale(found)
    for run_id, col in columns.items():
        ui.show_explanation(col, found[run_id], scale)
    if columns:
        ui.scale_caption(scale)

"""Predict: type a text and see each chosen run's label, class probabilities and which words led to it, the runs side
by side; or label a whole file of texts."""

import plotly.express as px
import streamlit as st

import ui
from core import words
from core.data import reading
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
        with ui.sessions()() as s:
            job = s.get(LabelJob, job_id)
        if job is None:
            return
        if active and RunStatus(job.status).finished:
            st.rerun()  # it just ended: show the download, without polling
        if job.status == RunStatus.QUEUED.value:
            st.info(f"{job.file_name}: waiting for the background worker (it finishes the run it is training first).")
        elif job.status == RunStatus.RUNNING.value:
            done = job.rows_done / max(job.rows_total, 1)
            st.progress(done, text=f"{job.file_name}: {job.rows_done:,} of {job.rows_total:,} rows labelled")
        elif job.status == RunStatus.COMPLETED.value:
            output = labels.output_path(ui.settings(), job)
            if not output.exists():
                st.error(f"The labelled {job.file_name} is no longer in the data folder: label the file again.")
                return
            st.caption(f"{job.file_name}, labelled. The first rows:")
            st.dataframe(labels.preview(output), hide_index=True, key="label_result_preview")
            st.download_button(
                f"Download {labels.download_name(job)} ({job.rows_total:,} rows)",
                output.read_bytes,  # read when the button is pressed, not at every rerun
                file_name=labels.download_name(job),
                mime="text/csv",
                type="primary",
                key="label_download",
                help="Every column of your file, then each run's label and its probability, named by the run's "
                "number, method and seed (#12 LoRA · seed 42). Opens in a spreadsheet.",
            )
        else:
            st.error(f"{job.file_name} could not be labelled: {job.error}")

    progress()


def label_file_tab(done: dict[int, Run], default: list[int]) -> None:
    upload = st.file_uploader(
        "File of texts",
        type=["csv", "txt", "tsv"],
        key="label_file",
        help="A CSV (pick its text column; UTF-8, GBK or UTF-16) or a .txt file with one text a line.",
    )
    if upload is not None:
        file = reading.SplitFile(upload.name, upload.getvalue())
        try:
            text_file = reading.read_text_file(file, ui.settings())
        except reading.DataError as e:
            return ui.problems(f"{upload.name} cannot be read:", e.problems)
        columns = [str(c) for c in text_file.frame.columns]
        st.caption(f"{len(text_file.frame):,} rows, read as {text_file.encoding}. The first rows:")
        st.dataframe(text_file.frame.head(5), hide_index=True, key="label_preview")
        column = st.selectbox(
            "Text column",
            columns,
            index=columns.index(labels.guess_text_column(text_file.frame)),
            key="label_column",
            help="The column that holds the texts to label; every column is kept in the result.",
        )
        chosen = st.multiselect(
            "Runs",
            list(done),
            default=default,
            format_func=lambda i: describe.run_label(done[i]),
            key="label_runs",
            help="Each chosen run adds its label and probability columns.",
        )
        every = st.checkbox("Every class's probability too", key="label_all_probabilities")
        if st.button("Label the file", key="label_start", type="primary", disabled=not chosen):
            try:
                with ui.sessions(write=True)() as s:
                    st.session_state["label_job"] = labels.submit(s, ui.settings(), file, chosen, column, every).id
                ui.keep_worker_running()
            except reading.DataError as e:
                ui.problems(f"{upload.name} cannot be labelled:", e.problems)
            except predict.RunNotReady as e:
                st.error(str(e))
    if "label_job" in st.session_state:
        label_job_view(st.session_state["label_job"])


st.title("Predict")
with ui.sessions()() as s:
    done = {r.id: r for r in tables.completed_runs(s)}
    latest = tables.latest_pair(s)
if not done:
    st.info("No run has finished yet. Train one first; its model then answers here.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

ui.explainer(ui.settings().db_url)  # its process starts now (imports take seconds), ready when a text is typed
typed, whole_file = st.tabs(["Type a text", "Label a file"])
with whole_file:
    label_file_tab(done, latest or list(done)[:1])

with typed:
    chosen = st.multiselect(
        "Runs",
        list(done),
        default=latest or list(done)[:1],
        format_func=lambda i: describe.run_label(done[i]),
        key="predict_runs",
        help="Each chosen run's model gives its own answer.",
    )
    text = st.text_area(
        "Text",
        key="predict_text",
        placeholder="e.g. Stocks rally as the central bank cuts rates",
        help="Any sentence in the language of your data.",
    )
    st.button("Predict", key="predict_button", type="primary", help="Or press Ctrl+Enter in the text box.")
    if not text.strip() or not chosen:
        st.caption("Type a text and pick at least one run to see the answers.")
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
                col.error(f"This run's model could not be loaded: {e}")
                continue
            chance, sure = 1 / len(probs), predict.sure_from(len(probs))
            unsure = probs[label] < sure
            col.metric(
                "Uncertain: its best guess" if unsure else "Predicted label",
                label,
                f"{words.percent(probs[label])} probability · guessing: {words.percent(chance)}",
                delta_color="off",
                delta_arrow="off",
                help=f"With {len(probs)} classes, a blind guess is right {words.percent(chance)} of the time. An "
                f"answer under {words.percent(sure)} (halfway from guessing to certain) is drawn as uncertain.",
            )
            if unsure:
                col.caption(
                    f"{words.percent(probs[label])} is under {words.percent(sure)}, halfway from a blind "
                    f"guess ({words.percent(chance)}) to certain. The model leans to '{label}' but does not know."
                )
            fig = px.bar(x=list(probs.values()), y=list(probs), orientation="h", labels={"x": "probability", "y": ""})
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
                    f"This text is {seen['tokens']:,} tokens long; the model reads only the first "
                    f"{seen['read']} (the run's max length) and ignores the rest."
                )
            foreign = coverage.other_script(text, trained_scripts(ui.settings().db_url, run_id))
            foreign = foreign or coverage.other_language(text, trained_languages(ui.settings().db_url, run_id))
            if foreign:
                col.warning(foreign)
            elif seen["unknown_share"] >= coverage.POOR_SHARE:
                col.warning(
                    f"{words.percent(seen['unknown_share'])} of this text's tokens are unknown to this model, so "
                    "its answer means little: is the text in a language the model never learnt? The Train page "
                    "names the models on this machine that read it."
                )
            columns[run_id] = col
            targets[run_id] = col.selectbox(
                "Which words led to",
                [None, *probs],
                format_func=lambda c, label=label: f"{label} (its answer)" if c is None else c,
                key=f"predict_explain_{run_id}",
                help="The text below is shaded for this class: which words pushed the model toward it, which away.",
            )

    found = ui.explained(list(columns), text, targets)  # every column on one scale, so shades compare across runs
    scale = ui.shared_scale(found)
    for run_id, col in columns.items():
        ui.show_explanation(col, found[run_id], scale)
    if columns:
        ui.scale_caption(scale)

"""Compare: test scores and costs, curves overlaid, confusion matrices side by side, and where the runs disagree."""

import streamlit as st

import ui
from core import views
from core.downloads import safe_csv

st.title("Compare")
with ui.sessions()() as s:
    done = {r.id: r for r in views.completed_runs(s)}
    latest = views.latest_pair(s)
if len(done) < 2:
    st.info("Compare needs two completed runs. Queue a pair (full fine-tuning + LoRA) on the Train page.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

from_url = [i for i in ui.query_ids("runs") or [] if i in done]
chosen = st.multiselect(
    "Runs to compare",
    list(done),
    default=from_url or latest,
    format_func=lambda i: views.run_label(done[i]),
    key="compare_runs",
    help="Completed runs; the most recent pair is chosen for you.",
)
st.query_params["runs"] = ",".join(map(str, chosen))
if len(chosen) < 2:
    st.info("Pick at least two runs.")
    st.stop()
chosen_runs = [done[i] for i in chosen]

st.subheader("Test scores and costs")
fmt = st.column_config.NumberColumn
columns = {
    **{c: fmt(format="%.3f") for c in ("accuracy", "precision (weighted)", "recall (weighted)", "macro-F1")},
    **{
        c: fmt(format="%.1f")
        for c in ("train time (s)", "samples/s", "peak memory (MB)", "model size (MB)", "tokenizer (MB)")
    },
    **{c: fmt(format="localized") for c in ("trainable params", "total params")},
    "trainable share": fmt(format="percent"),
}
scores = views.compare_frame(chosen_runs)
st.dataframe(scores, hide_index=True, column_config=columns)
st.download_button(
    "Download these scores (CSV)",
    safe_csv(scores),
    "lora-lab-scores.csv",
    "text/csv",
    key="compare_download_scores",
    help="Opens in Excel; cells that look like formulas are saved as plain text.",
)
st.caption(
    "Test scores: higher is better. Model size is the weights saved to disk (for LoRA: the add-ons and the head); "
    "the tokenizer saved beside them is counted apart, the same for both methods."
)

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
    st.plotly_chart(ui.curves_figure(views.curves_frame(s, chosen_runs), x), key="compare_curves")

st.subheader("Confusion matrices")
normalised = st.toggle(
    "Show shares of each true class instead of counts",
    key="compare_normalised",
    help="Each row then sums to 100%: how each true class was predicted.",
)
width = min(3, len(chosen_runs))
for start in range(0, len(chosen_runs), width):
    for col, run in zip(st.columns(width), chosen_runs[start : start + width]):
        col.plotly_chart(ui.confusion_figure(run, normalised), key=f"compare_cm_{run.id}")

st.subheader("Where they disagree")
try:
    with ui.sessions()() as s:
        disagree = views.disagreements(s, chosen_runs)
except views.NotComparable as e:
    st.warning(str(e))
else:
    st.caption(f"{len(disagree)} test texts get different labels from these runs (✓ right, ✗ wrong).")
    st.dataframe(disagree, hide_index=True)
    st.download_button(
        "Download these texts (CSV)",
        safe_csv(disagree),
        "lora-lab-disagreements.csv",
        "text/csv",
        key="compare_download_disagreements",
        help="Opens in Excel; cells that look like formulas are saved as plain text.",
    )

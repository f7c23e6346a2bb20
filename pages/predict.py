"""Predict: type a text and see each chosen run's label and class probabilities."""

import plotly.express as px
import streamlit as st

import ui
from core import models, predict, views
from core.db import Run

UNKNOWN_SHARE = 0.2  # tokens the model's vocabulary lacks: above this share, its answer is mostly a guess


@st.cache_resource(max_entries=8, show_spinner="Loading the model (only the first time)…")
def predictor(db_url: str, run_id: int) -> predict.Predictor:
    """One loaded model per run, kept between predictions and shared by every browser tab."""
    with ui.sessions()() as s:
        run = s.get(Run, run_id)
    if run is None:
        raise predict.RunNotReady(f"Run {run_id} no longer exists.")
    return predict.load_run(ui.settings(), run)


st.title("Predict")
with ui.sessions()() as s:
    done = {r.id: r for r in views.completed_runs(s)}
    latest = views.latest_pair(s)
if not done:
    st.info("No run has finished yet. Train one first; its model then answers here.")
    st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

chosen = st.multiselect(
    "Runs",
    list(done),
    default=latest or list(done)[:1],
    format_func=lambda i: views.run_label(done[i]),
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
    st.stop()

height = 80 + 30 * max(len((done[i].test_metrics or {}).get("classes") or [0]) for i in chosen)  # one size for all
for start in range(0, len(chosen), 3):
    for col, run_id in zip(st.columns(3), chosen[start : start + 3]):
        col.markdown(f"**{views.run_label(done[run_id], [done[i] for i in chosen])}**")
        try:
            model = predictor(ui.settings().db_url, run_id)
            label, probs = model.predict(text)
            reading = model.reading(text)
        except (predict.RunNotReady, models.ModelSourceError, OSError, ValueError) as e:
            col.error(f"This run's model could not be loaded: {e}")
            continue
        chance = 1 / len(probs)
        col.metric(
            "Predicted label",
            label,
            f"{views.percent(probs[label])} probability · guessing: {views.percent(chance)}",
            delta_color="off",
            delta_arrow="off",
            help=f"With {len(probs)} classes, a blind guess is right {views.percent(chance)} of the time.",
        )
        fig = px.bar(x=list(probs.values()), y=list(probs), orientation="h", labels={"x": "probability", "y": ""})
        fig.update_traces(texttemplate="%{x:.1%}", textposition="outside", cliponaxis=False)
        fig.add_vline(x=chance, line_dash="dot", line_color="grey", annotation_text="guessing")
        fig.update_layout(height=height, margin={"t": 20, "b": 10, "r": 40})
        fig.update_xaxes(range=[0, 1], tickformat=".0%")
        fig.update_yaxes(type="category", autorange="reversed")  # class names are names, even when they are numbers
        col.plotly_chart(fig, key=f"predict_chart_{run_id}")
        if reading["tokens"] > reading["read"]:
            col.warning(
                f"This text is {reading['tokens']:,} tokens long; the model reads only the first {reading['read']} "
                "(the run's max length) and ignores the rest."
            )
        if reading["unknown_share"] >= UNKNOWN_SHARE:
            col.warning(
                f"{views.percent(reading['unknown_share'])} of this text's tokens are unknown to this model, so its "
                "answer means little: is the text in a language the model never learnt? Train on a model that "
                "knows it (for Chinese, e.g. bert-base-chinese)."
            )

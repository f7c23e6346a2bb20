"""Predict: type a text and see each chosen run's label and class probabilities."""

import plotly.express as px
import streamlit as st

import ui
from core import models, predict, views
from core.db import Run


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

for start in range(0, len(chosen), 3):
    for col, run_id in zip(st.columns(3), chosen[start : start + 3]):
        col.markdown(f"**{views.run_label(done[run_id])}**")
        try:
            label, probs = predictor(ui.settings().db_url, run_id).predict(text)
        except (predict.RunNotReady, models.ModelSourceError, OSError, ValueError) as e:
            col.error(f"This run's model could not be loaded: {e}")
            continue
        col.metric("Predicted label", label, f"{probs[label]:.0%} probability", delta_color="off", delta_arrow="off")
        fig = px.bar(x=list(probs.values()), y=list(probs), orientation="h", labels={"x": "probability", "y": ""})
        fig.update_layout(height=60 + 28 * len(probs), margin={"t": 10, "b": 10}, xaxis_range=[0, 1])
        col.plotly_chart(fig, key=f"predict_chart_{run_id}")

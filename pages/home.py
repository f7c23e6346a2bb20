"""Start: what LoRA Lab does, and the next thing to do."""

import streamlit as st

import ui
from core.i18n import _
from core.results import tables

ui.speak()  # the visitor's language (core.i18n), before any word of the page

st.title("LoRA Lab")
st.markdown(
    _(
        "Teach a language model to sort texts into your categories, two ways, and compare them:\n"
        "- **Full fine-tuning** adjusts every one of the model's millions of weights.\n"
        "- **LoRA** freezes the model and trains small add-on weights (often under 1% of the total): "
        "faster, lighter, and often nearly as accurate."
    )
)

with ui.sessions()() as s:
    counts = tables.overview(s)

st.subheader(_("Next step"))
if counts["datasets"] == 0:
    st.info(_("Add a dataset: upload your own CSV files, or start with the bundled demo set of news titles."))
    ui.demo_button("home_add_demo")
    st.page_link("pages/data.py", label=_("Upload my own data"), icon=":material/upload:")
elif counts["active"]:
    st.info(_("{count} run(s) are training or waiting. Watch their progress.", count=counts["active"]))
    st.caption(ui.queue_empties_line())
    st.page_link("pages/runs.py", label=_("Open Runs"), icon=":material/monitoring:")
elif counts["completed"] >= 2:
    st.success(
        _(
            "{count} runs have finished. See which method did better, or try them on a sentence.",
            count=counts["completed"],
        )
    )
    st.page_link("pages/compare.py", label=_("Compare runs"), icon=":material/compare:")
    st.page_link("pages/predict.py", label=_("Predict"), icon=":material/chat:")
else:
    st.info(_("Train: queue a pair (full fine-tuning and LoRA on the same data) with the 'quick demo' preset."))
    st.page_link("pages/train.py", label=_("Open Train"), icon=":material/model_training:")

st.subheader(_("The steps"))
st.markdown(
    _(
        "1. **Data**: three CSV files, train / dev / test, with a text and a label column. {datasets} stored.\n"
        "2. **Train**: pick a dataset, a model and a preset; queue a full-vs-LoRA pair. Training goes on with the "
        "browser closed.\n"
        "3. **Runs**: live curves, progress and history. {runs} runs so far.\n"
        "4. **Compare**: scores, costs, curves, confusion matrices and the texts on which runs disagree.\n"
        "5. **Predict**: type a sentence and see each model's answer.",
        datasets=counts["datasets"],
        runs=counts["runs"],
    )
)

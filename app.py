"""LoRA Lab: the frame and the router. Pages live in pages/; everything that is not UI lives in core/."""

import streamlit as st

import ui

st.set_page_config(page_title="LoRA Lab", page_icon=":material/science:", layout="wide")
if not ui.signed_in():  # an optional classroom password (.streamlit/secrets.toml); no page opens before it
    st.navigation([st.Page(ui.sign_in_page, title="Sign in")], position="hidden").run()
    st.stop()
page = st.navigation(
    {
        "LoRA Lab": [st.Page("pages/home.py", title="Start", icon=":material/home:", default=True)],
        "Steps": [
            st.Page("pages/data.py", title="Data", icon=":material/table:"),
            st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
            st.Page("pages/runs.py", title="Runs", icon=":material/monitoring:"),
            st.Page("pages/compare.py", title="Compare", icon=":material/compare:"),
            st.Page("pages/predict.py", title="Predict", icon=":material/chat:"),
        ],
    }
)
trainer = ui.keep_trainer_running()  # queued runs train in a background process, even with every tab closed
if trainer == "starting":
    st.sidebar.caption("Starting the trainer…")
elif trainer == "down":
    log = ui.settings().data_dir / "worker.log"
    st.sidebar.warning(f"The trainer stopped or did not start, so queued runs wait; trying again. Its log: {log}")
page.run()

"""LoRA Lab engine: data, models, training, worker and run history. Never imports streamlit."""

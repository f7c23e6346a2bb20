"""Train: pick data, model, method and settings; queue a full-vs-LoRA pair or one run. The worker trains it."""

import streamlit as st

import ui
from core import words
from core.data import reading
from core.jobs import cost, runs
from core.results import describe, tables, verdict
from core.store.db import Dataset
from core.training import coverage, device, failures, models
from core.training.config import METHOD_NAMES, OLD_PRESET_NAMES, PRESETS, TrainConfig, preset_config, problems_of

MODEL_KINDS = [
    "Bundled: all-MiniLM-L6-v2 (works offline)",
    "A Hugging Face model id",
    "A model folder on this machine",
]
FIELDS = {  # widget key -> (TrainConfig field, label, step, glossary term for its help)
    "train_epochs": ("epochs", "Epochs", 1.0, "epochs"),
    "train_batch_size": ("batch_size", "Batch size", 1, "batch size"),
    "train_max_length": ("max_length", "Max length (tokens)", 8, "max length"),
    "train_weight_decay": ("weight_decay", "Weight decay", 0.001, "weight decay"),
    "train_warmup_ratio": ("warmup_ratio", "Warmup (share of training)", 0.05, "warmup"),
    "train_evals_per_epoch": ("evals_per_epoch", "Evaluations per epoch", 1, "evaluations per epoch"),
    "train_seed": ("seed", "Seed", 1, "seed"),
    "train_lora_r": ("lora_r", "LoRA rank", 1, "LoRA rank"),
    "train_lora_alpha": ("lora_alpha", "LoRA alpha", 1, "LoRA alpha"),
    "train_lora_dropout": ("lora_dropout", "LoRA dropout", 0.05, "LoRA dropout"),
    "train_lora_targets": ("lora_targets", "LoRA target layers", None, "LoRA target layers"),
}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def apply_preset() -> None:
    """The preset's settings; its seeds per pair too, unless the user has set their own (they keep theirs and are
    offered the preset's)."""
    name = st.session_state.get("train_preset", next(iter(PRESETS)))
    configs = {m: preset_config(name, m) for m in ("full", "lora")}
    for key, (field, _, step, _) in FIELDS.items():
        value = getattr(configs["lora"], field)
        st.session_state[key] = type(step)(value) if step is not None else value
    for m, config in configs.items():
        st.session_state[f"train_lr_{m}"] = float(config.learning_rate)
    if st.session_state.get("train_repeats") in (None, st.session_state.get("train_repeats_of_preset")):
        use_preset_repeats()


def use_preset_repeats() -> None:
    repeats = PRESETS[st.session_state.get("train_preset", next(iter(PRESETS)))].get("repeats", 1)
    st.session_state["train_repeats"] = st.session_state["train_repeats_of_preset"] = repeats


@st.cache_data(max_entries=16, show_spinner="Reading the model's configuration to count its parameters…")
def param_counts(source: str, classes: tuple, r: int, alpha: int, dropout: float, targets: str) -> dict:
    lora = {"lora_r": r, "lora_alpha": alpha, "lora_dropout": dropout, "lora_targets": targets}
    shapes = {
        m: cost.model_shape(source, len(classes), TrainConfig(method=m, **lora), ui.settings())
        for m in ("full", "lora")
    }
    return {m: (shape.trainable, shape.total) for m, shape in shapes.items()}


@st.cache_data(max_entries=16, show_spinner="Measuring how much of your text the model knows…")
def coverage_of(source: str, content_hash: str, _dataset: Dataset) -> coverage.Coverage | None:
    """Once per dataset and model (a spread sample of each split: well under a second); None when the model cannot
    be loaded, which the parameter counts above say."""
    try:
        return coverage.dataset_coverage(ui.settings(), _dataset, source)
    except (models.ModelSourceError, reading.DataError):
        return None


st.title("Train")
with ui.sessions()() as s:
    datasets = {d.id: d for d in tables.list_datasets(s)}
if not datasets:
    st.info("There is no dataset yet. Start with the demo set (news titles in 5 classes), or upload your own.")
    ui.demo_button("train_add_demo")
    st.page_link("pages/data.py", label="Upload my own data", icon=":material/upload:")
    st.stop()

fmt = {i: f"{d.name} ({len(d.classes)} classes, {d.sizes['train']:,} training rows)" for i, d in datasets.items()}
dataset = datasets[
    st.selectbox(
        "Dataset",
        list(datasets),
        format_func=fmt.get,
        key="train_dataset",
        persist_state="session",
        help="Stored on the Data page.",
    )
]
kind = st.radio(
    "Model", MODEL_KINDS, key="train_model_kind", persist_state="session", help="The pretrained model to start from."
)
source = models.BUNDLED
if kind == MODEL_KINDS[1]:
    help_ = "A BERT-style model's id on huggingface.co, downloaded on first use (or already in the local cache)."
    source = st.text_input(
        "Model id", key="train_model_name", persist_state="session", placeholder="e.g. bert-base-chinese", help=help_
    )
elif kind == MODEL_KINDS[2]:
    roots = " or ".join(str(r) for r in ui.settings().allowed_model_roots())
    help_ = f"A folder saved with save_pretrained, inside {roots} (the folders this server may read)."
    source = st.text_input(
        "Model folder",
        key="train_model_name",
        persist_state="session",
        placeholder=f"e.g. {roots.split()[0]}/my-bert",
        help=help_,
    )
source = source.strip()
if st.session_state.get("train_preset") in OLD_PRESET_NAMES:  # a session from before the preset was renamed
    st.session_state["train_preset"] = OLD_PRESET_NAMES[st.session_state["train_preset"]]
st.radio(
    "Preset",
    list(PRESETS),
    key="train_preset",
    persist_state="session",
    on_change=apply_preset,
    horizontal=True,
    captions=[f"{p['about']} {ui.preset_time(dataset, source, name)}" for name, p in PRESETS.items()],
    help="Ready-made settings; change any of them under Details.",
)
if "train_epochs" not in st.session_state:
    apply_preset()
method = st.radio(
    "Method for a single run",
    ["lora", "full"],
    format_func=METHOD_NAMES.get,
    key="train_method",
    persist_state="session",
    horizontal=True,
    help="A pair always trains both.",
)

with st.expander("Details: every setting"):
    cols, values = st.columns(3), {}
    for i, (key, (field, label, step, term)) in enumerate(FIELDS.items()):
        help_ = describe.GLOSSARY[term]
        if step is None:
            values[field] = cols[i % 3].text_input(label, key=key, help=help_, persist_state="session")
        else:
            fmt_ = "%g" if isinstance(step, float) else None  # 1 epoch, not 1.00
            values[field] = cols[i % 3].number_input(
                label, step=step, format=fmt_, key=key, help=help_, persist_state="session"
            )
    lr = {
        m: cols[i].number_input(
            f"Learning rate, {'LoRA' if m == 'lora' else 'full fine-tuning'}",
            step=step,
            format="%g",  # 0.00005, not 5.0e-5
            key=f"train_lr_{m}",
            persist_state="session",
            help=describe.GLOSSARY["learning rate"] + (" LoRA usually needs a larger one." if m == "lora" else ""),
        )
        for i, (m, step) in enumerate((("full", 1e-5), ("lora", 1e-4)))
    }
configs = {m: TrainConfig(method=m, learning_rate=lr[m], **values) for m in ("full", "lora")}

problems = problems_of(list(configs.values()))
estimates = {}  # each method's estimate, kept on its run when queued
model_ok = bool(source)
if not source:
    st.warning("Type the model's name or folder.")
if problems:
    ui.problems("These settings cannot be trained; change them under Details:", problems)
elif source:
    try:
        counts = param_counts(source, tuple(dataset.classes), *(values[f] for f in LORA_FIELDS))
        columns = st.columns(2)
        model_size = counts["full"][1]  # the model's own weights: LoRA's add-ons are counted in its share, not here
        for col, (m, (trainable, total)) in zip(columns, counts.items()):
            col.metric(
                f"{METHOD_NAMES[m]} trains",
                f"{trainable:,} weights",
                f"{words.percent(trainable / model_size)} of the model's {model_size:,}",
                delta_color="off",
                delta_arrow="off",
                help=describe.GLOSSARY["trainable weights"],
            )
        estimates = ui.estimate_panel(dataset, source, configs, columns, method)
    except (models.ModelSourceError, failures.TrainingError) as e:
        model_ok = False
        st.error(str(e))
if model_ok and source:  # the settings play no part: said even while they are refused
    known = coverage_of(source, dataset.content_hash, dataset)
    if known is not None and known.poor:
        st.warning(known.warning(), icon=":material/translate:")

if not problems and (few := cost.few_updates_text(configs[method], dataset.sizes["train"])):
    st.warning(few)
st.caption(device.training_device_text(ui.settings().device, ui.settings().runner))
repeats = st.number_input(
    "Seeds per pair",
    min_value=1,
    max_value=runs.MAX_REPEATS,
    key="train_repeats",
    persist_state="session",
    help="The pair is trained once per seed (s, s+1, ...): the verdict on Compare then covers how much the result "
    "moves from seed to seed. Each seed adds two runs.",
)
preset_repeats = PRESETS[st.session_state.get("train_preset", next(iter(PRESETS)))].get("repeats", 1)
if repeats != preset_repeats:
    st.button(
        f"Use the preset's {preset_repeats} seed{'s' if preset_repeats > 1 else ''} per pair",
        key="train_use_preset_repeats",
        on_click=use_preset_repeats,
        help="The preset leaves the number of seeds you set as it is; this sets the preset's own.",
    )
test_size = dataset.sizes["test"]
st.caption(
    f"With {test_size:,} test texts, differences under about {verdict.noise_floor(test_size):.1f} points of accuracy "
    f"cannot be told from chance (when the methods disagree on 1 text in 10); about "
    f"{verdict.texts_needed():,} test texts tell {verdict.RESOLUTION_POINTS:g} points apart. More seeds show how much "
    "a result moves by chance; more test texts make each result surer."
)
c1, c2 = st.columns(2)
help_pair = "Same data and epochs with each method, once per seed, for a fair comparison."
pair = c1.button(
    "Queue a pair: full fine-tuning + LoRA" + (f", {repeats} seeds" if repeats > 1 else ""),
    key="train_pair",
    type="primary",
    disabled=not model_ok or bool(problems),
    help=help_pair,
)
single_off = not model_ok or bool(configs[method].problems())
single = c2.button(
    f"Queue one {METHOD_NAMES[method]} run",
    key="train_single",
    disabled=single_off,
    help="Just the method chosen above.",
)
if pair or single:
    with ui.sessions(write=True)() as s:
        try:
            target = s.get(Dataset, dataset.id)
            if target is None:
                raise reading.DataError("This dataset was just deleted. Pick another one.")
            if pair:
                _, queued = runs.create_comparison(
                    s, target, source, configs["lora"], lr, estimates, repeats=int(repeats)
                )
            else:
                queued = [runs.create_run(s, target, source, configs[method], estimate=estimates.get(method))]
        except (runs.ConfigError, reading.DataError) as e:
            ui.problems("Nothing was queued:", e.problems)
            st.stop()
    ui.keep_worker_running()
    st.switch_page("pages/runs.py", query_params={"run": str(queued[0].id)})

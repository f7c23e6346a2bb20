"""Train: pick data, model, method and settings; queue a full-vs-LoRA pair, one run, or a study (one setting varied).
The worker trains them."""

import streamlit as st

import ui
from core import words
from core.data import reading
from core.i18n import N_, _, ngettext, number
from core.jobs import cost, runs, studies
from core.results import describe, tables, verdict
from core.results import studies as found
from core.store.db import Dataset
from core.training import coverage, device, failures, models
from core.training.config import METHOD_NAMES, OLD_PRESET_NAMES, PRESETS, TrainConfig, preset_config, problems_of

ui.speak()  # the visitor's language (core.i18n), before any word of the page

MODEL_KINDS = [  # the radio's values (kept in the session whatever the language), shown translated
    N_("Bundled: all-MiniLM-L6-v2 (works offline)"),
    N_("A Hugging Face model id"),
    N_("A model folder on this machine"),
]
FIELDS = {  # widget key -> (TrainConfig field, label, step, glossary term for its help)
    "train_epochs": ("epochs", N_("Epochs"), 1.0, "epochs"),
    "train_batch_size": ("batch_size", N_("Batch size"), 1, "batch size"),
    "train_max_length": ("max_length", N_("Max length (tokens)"), 8, "max length"),
    "train_weight_decay": ("weight_decay", N_("Weight decay"), 0.001, "weight decay"),
    "train_warmup_ratio": ("warmup_ratio", N_("Warmup (share of training)"), 0.05, "warmup"),
    "train_evals_per_epoch": ("evals_per_epoch", N_("Evaluations per epoch"), 1, "evaluations per epoch"),
    "train_seed": ("seed", N_("Seed"), 1, "seed"),
    "train_lora_r": ("lora_r", N_("LoRA rank"), 1, "LoRA rank"),
    "train_lora_alpha": ("lora_alpha", N_("LoRA alpha"), 1, "LoRA alpha"),
    "train_lora_dropout": ("lora_dropout", N_("LoRA dropout"), 0.05, "LoRA dropout"),
    "train_lora_targets": ("lora_targets", N_("LoRA target layers"), None, "LoRA target layers"),
}
LORA_FIELDS = ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")


def apply_preset() -> None:
    """The preset's settings; its seeds per pair too, unless the user has set their own (they keep theirs and are
    offered the preset's)."""
    name = st.session_state.get("train_preset", next(iter(PRESETS)))
    configs = {m: preset_config(name, m) for m in ("full", "lora")}
    for key, (field, __, step, ___) in FIELDS.items():
        value = getattr(configs["lora"], field)
        st.session_state[key] = type(step)(value) if step is not None else value
    for m, config in configs.items():
        st.session_state[f"train_lr_{m}"] = float(config.learning_rate)
    if st.session_state.get("train_repeats") in (None, st.session_state.get("train_repeats_of_preset")):
        use_preset_repeats()


def use_preset_repeats() -> None:
    repeats = PRESETS[st.session_state.get("train_preset", next(iter(PRESETS)))].get("repeats", 1)
    st.session_state["train_repeats"] = st.session_state["train_repeats_of_preset"] = repeats


@st.cache_data(max_entries=16, show_spinner=_("Reading the model's configuration to count its parameters…"))
def param_counts(source: str, classes: tuple, r: int, alpha: int, dropout: float, targets: str) -> dict:
    lora = {"lora_r": r, "lora_alpha": alpha, "lora_dropout": dropout, "lora_targets": targets}
    shapes = {
        m: cost.model_shape(source, len(classes), TrainConfig(method=m, **lora), ui.settings())
        for m in ("full", "lora")
    }
    return {m: (shape.trainable, shape.total) for m, shape in shapes.items()}


@st.cache_data(max_entries=16, show_spinner=_("Measuring how much of your text the model knows…"))
def coverage_of(source: str, content_hash: str, _dataset: Dataset) -> coverage.Coverage | None:
    """Once per dataset and model (a spread sample of each split: well under a second); None when the model cannot
    be loaded, which the parameter counts above say."""
    try:
        return coverage.dataset_coverage(ui.settings(), _dataset, source)
    except (models.ModelSourceError, reading.DataError):
        return None


STUDIES = {  # what a study varies -> (its name, what it answers), shown translated
    "lr": (N_("Learning rate"), N_("A fair verdict: each method at its own best rate, chosen on the dev set.")),
    "train_size": (N_("Training-set size"), N_("Where each method wins: both trained on the same nested subsets.")),
    "lora_rank": (N_("LoRA rank"), N_("What the adapters' size buys: LoRA at each rank against full fine-tuning.")),
}
WHAT = {"comparison": N_("A pair or one run"), "study": N_("A study: one setting varied")}  # what to queue


def listed(values) -> str:
    """Values as a box shows them: '1e-05, 5e-05, 0.0001' or '100, 250, 500' (no thousands separators)."""
    return ", ".join(str(int(v)) if v >= 1 else f"{v:g}" for v in values)


def study_time(vary: str, seeds: int, grid: dict, estimates: dict, train_rows: int) -> str:
    """The study's time in words, from each method's run estimate, and what a smaller one would cost."""

    def said(seeds_: int, grid_: dict) -> tuple[int, str]:
        t = studies.study_seconds(vary, seeds_, grid_, estimates, train_rows)
        if vary == "lr":
            return t["runs"], _(
                "at most {most}; likely about {likely} with the hopeless rates stopped early",
                most=words.duration_text(t["most"]),
                likely=words.duration_text(t["likely"]),
            )
        return t["runs"], _("about {time}", time=words.duration_text(t["most"]))

    n, time = said(seeds, grid)
    smaller = []
    if seeds > 1:
        smaller.append((_("1 seed"), said(1, grid)))
    lists = [k for k in grid if k in ("full", "lora", "values")]
    if any(len(grid[k]) > 3 for k in lists):
        fewer = {**grid, **{k: grid[k][:3] for k in lists}}
        smaller.append((_("3 rates a method") if vary == "lr" else _("3 values"), said(seeds, fewer)))
    text = ngettext(
        "The study trains {n} run, one after another: {time}.",
        "The study trains {n} runs, one after another: {time}.",
        n,
        time=time,
    )
    if smaller:
        options = _("; ").join(
            ngettext("{what}, {n} run, {time}", "{what}, {n} runs, {time}", m, what=what, time=t)
            for what, (m, t) in smaller
        )
        text = _("{text} Smaller: {options}.", text=text, options=options)
    return text


def study_form(dataset: Dataset, source: str, configs: dict, rates: dict, estimates: dict, ready: bool) -> None:
    """A study: one setting varied, each point a full-vs-LoRA comparison (core.jobs.studies); its values, seeds and
    time, then queue it."""
    vary = st.radio(
        _("Vary"),
        list(STUDIES),
        format_func=lambda v: _(STUDIES[v][0]),
        captions=[_(about) for __, about in STUDIES.values()],
        key="train_study_vary",
        persist_state="session",
        horizontal=True,
        help=_(
            "The one setting the study changes; everything else is as set above. Each value is a full fine-tuning "
            "against LoRA comparison."
        ),
    )
    boxes = {}
    if vary == "lr":
        for col, m in zip(st.columns(2), ("full", "lora")):
            boxes[m] = col.text_input(
                _("Learning rates, full fine-tuning") if m == "full" else _("Learning rates, LoRA"),
                listed(sorted(set(studies.DEFAULT_GRIDS[m]) | {rates[m]})),
                key=f"train_study_lr_{m}",
                help=_(
                    "Each tried on the first seed; {rate}, this page's rate, is always among them and always trained "
                    "to the end (the verdict at the default rates). The others may be stopped early when clearly "
                    "behind. Separate them with commas.",
                    rate=f"{rates[m]:g}",
                ),
            )
    elif vary == "train_size":
        rows, classes = dataset.sizes["train"], len(dataset.classes)
        boxes["values"] = st.text_input(
            _("Training rows"),
            listed(studies.default_values("train_size", rows)),
            key=f"train_study_sizes_{dataset.id}",
            help=_(
                "Between {classes} and {rows} (every training row). Each smaller set lies inside the larger, holds "
                "every class in its share, and is the same for both methods; the dev and test sets stay whole.",
                classes=classes,
                rows=rows,
            ),
        )
    else:
        boxes["values"] = st.text_input(
            _("LoRA ranks"),
            listed(studies.DEFAULT_RANKS),
            key="train_study_ranks",
            help=_(
                "LoRA is trained at each rank; full fine-tuning once a seed, the line each rank is held against. "
                "{about}",
                about=_(describe.GLOSSARY["LoRA rank"]),
            ),
        )
    seeds = st.number_input(
        _("Fresh seeds for each method's chosen rate") if vary == "lr" else _("Seeds per value"),
        min_value=1,
        max_value=runs.MAX_REPEATS,
        value=3,
        key=f"train_study_seeds_{vary}",
        persist_state="session",
        help=_(
            "Each method's best rate on the dev set is trained again on new seeds (never the one it was chosen on) "
            "for the verdict on the test set."
        )
        if vary == "lr"
        else _("Each value's pair is trained once per seed: the chart shows the range over the seeds as a band."),
    )
    try:
        typed = {k: studies.values_from_text(text) for k, text in boxes.items()}
    except runs.ConfigError as e:
        ui.problems(_("These values cannot be read:"), e.problems)
        typed = None
    if typed is not None:
        if vary == "lr":
            grid = {m: sorted(set(typed[m]) | {rates[m]}) for m in typed}
        else:
            grid = {"values": sorted(set(typed["values"]))}
        if estimates:
            st.caption(study_time(vary, int(seeds), grid, estimates, dataset.sizes["train"]))
        else:
            st.caption(_("No estimate of the study's time: each method's run has none (see above)."))
    queue = st.button(
        _("Queue the study"),
        key="train_study",
        type="primary",
        disabled=not ready or typed is None,
        help=_(
            "Its runs are queued now (a learning-rate study's fresh seeds once its rates have trained); the "
            "background worker trains them one after another. The study opens on Compare."
        ),
    )
    if not queue:
        return
    with ui.sessions(write=True)() as s:
        try:
            target = s.get(Dataset, dataset.id)
            if target is None:
                raise reading.DataError(_("This dataset was just deleted. Pick another one."))
            study, queued = studies.create_study(
                s,
                target,
                source,
                configs["lora"],
                vary,
                seeds=int(seeds),
                values=None if vary == "lr" else typed["values"],
                grids={m: typed[m] for m in ("full", "lora")} if vary == "lr" else None,
                default_rates=rates,
                estimates=estimates,
            )
        except (runs.ConfigError, reading.DataError) as e:
            return ui.problems(_("Nothing was queued:"), e.problems)
        study_id, label = study.id, found.study_label(study)
    ui.keep_worker_running()
    st.success(
        ngettext(
            "Queued {label}: {n} run for now. The background worker trains them.",
            "Queued {label}: {n} runs for now. The background worker trains them.",
            len(queued),
            label=label,
        )
    )
    st.page_link(
        "pages/compare.py",
        label=_("Open study #{study} on Compare", study=study_id),
        query_params={"study": str(study_id)},
        icon=":material/compare:",
    )


st.title(_("Train"))
with ui.sessions()() as s:
    datasets = {d.id: d for d in tables.list_datasets(s)}
if not datasets:
    st.info(_("There is no dataset yet. Start with the demo set (news titles in 5 classes), or upload your own."))
    ui.demo_button("train_add_demo")
    st.page_link("pages/data.py", label=_("Upload my own data"), icon=":material/upload:")
    st.stop()

fmt = {
    i: _(
        "{name} ({classes} classes, {rows} training rows)",
        name=d.name,
        classes=len(d.classes),
        rows=number(d.sizes["train"]),
    )
    for i, d in datasets.items()
}
dataset = datasets[
    st.selectbox(
        _("Dataset"),
        list(datasets),
        format_func=fmt.get,
        key="train_dataset",
        persist_state="session",
        help=_("Stored on the Data page."),
    )
]
kind = st.radio(
    _("Model"),
    MODEL_KINDS,
    format_func=_,
    key="train_model_kind",
    persist_state="session",
    help=_("The pretrained model to start from."),
)
source = models.BUNDLED
if kind == MODEL_KINDS[1]:
    help_ = _("A BERT-style model's id on huggingface.co, downloaded on first use (or already in the local cache).")
    source = st.text_input(
        _("Model id"),
        key="train_model_name",
        persist_state="session",
        placeholder=_("e.g. {example}", example="bert-base-chinese"),
        help=help_,
    )
elif kind == MODEL_KINDS[2]:
    roots = [str(r) for r in ui.settings().allowed_model_roots()]
    help_ = _(
        "A folder saved with save_pretrained, inside {roots} (the folders this server may read).",
        roots=_(" or ").join(roots),
    )
    source = st.text_input(
        _("Model folder"),
        key="train_model_name",
        persist_state="session",
        placeholder=_("e.g. {example}", example=f"{roots[0].split()[0]}/my-bert"),
        help=help_,
    )
source = source.strip()
if st.session_state.get("train_preset") in OLD_PRESET_NAMES:  # a session from before the preset was renamed
    st.session_state["train_preset"] = OLD_PRESET_NAMES[st.session_state["train_preset"]]
st.radio(
    _("Preset"),
    list(PRESETS),
    format_func=_,
    key="train_preset",
    persist_state="session",
    on_change=apply_preset,
    horizontal=True,
    captions=[
        _("{about} {time}", about=_(p["about"]), time=ui.preset_time(dataset, source, name))
        for name, p in PRESETS.items()
    ],
    help=_("Ready-made settings; change any of them under Details."),
)
if "train_epochs" not in st.session_state:
    apply_preset()
method = st.radio(
    _("Method for a single run"),
    ["lora", "full"],
    format_func=lambda m: _(METHOD_NAMES[m]),
    key="train_method",
    persist_state="session",
    horizontal=True,
    help=_("A pair always trains both."),
)

with st.expander(_("Details: every setting")):
    cols, values = st.columns(3), {}
    for i, (key, (field, label, step, term)) in enumerate(FIELDS.items()):
        help_ = _(describe.GLOSSARY[term])
        if step is None:
            values[field] = cols[i % 3].text_input(_(label), key=key, help=help_, persist_state="session")
        else:
            fmt_ = "%g" if isinstance(step, float) else None  # 1 epoch, not 1.00
            values[field] = cols[i % 3].number_input(
                _(label), step=step, format=fmt_, key=key, help=help_, persist_state="session"
            )
    lr = {
        m: cols[i].number_input(
            _("Learning rate, LoRA") if m == "lora" else _("Learning rate, full fine-tuning"),
            step=step,
            format="%g",  # 0.00005, not 5.0e-5
            key=f"train_lr_{m}",
            persist_state="session",
            help=_("{about} LoRA usually needs a larger one.", about=_(describe.GLOSSARY["learning rate"]))
            if m == "lora"
            else _(describe.GLOSSARY["learning rate"]),
        )
        for i, (m, step) in enumerate((("full", 1e-5), ("lora", 1e-4)))
    }
configs = {m: TrainConfig(method=m, learning_rate=lr[m], **values) for m in ("full", "lora")}

problems = problems_of(list(configs.values()))
estimates = {}  # each method's estimate, kept on its run when queued
model_ok = bool(source)
if not source:
    st.warning(_("Type the model's name or folder."))
if problems:
    ui.problems(_("These settings cannot be trained; change them under Details:"), problems)
elif source:
    try:
        counts = param_counts(source, tuple(dataset.classes), *(values[f] for f in LORA_FIELDS))
        columns = st.columns(2)
        model_size = counts["full"][1]  # the model's own weights: LoRA's add-ons are counted in its share, not here
        for col, (m, (trainable, total)) in zip(columns, counts.items()):
            col.metric(
                _("{method} trains", method=_(METHOD_NAMES[m])),
                _("{count} weights", count=number(trainable)),
                _(
                    "{share} of the model's {size}",
                    share=words.percent(trainable / model_size),
                    size=number(model_size),
                ),
                delta_color="off",
                delta_arrow="off",
                help=_(describe.GLOSSARY["trainable weights"]),
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
what = st.radio(
    _("What to queue"),
    list(WHAT),
    format_func=lambda o: _(WHAT[o]),
    key="train_what",
    persist_state="session",
    horizontal=True,
    help=_(
        "A study is a comparison with one setting varied (learning rate, training rows or LoRA rank): each value "
        "a full fine-tuning against LoRA comparison, shown on Compare as one chart."
    ),
)
if what == "study":
    study_form(dataset, source, configs, lr, estimates, ready=model_ok and bool(source) and not problems)
    st.stop()
repeats = st.number_input(
    _("Seeds per pair"),
    min_value=1,
    max_value=runs.MAX_REPEATS,
    key="train_repeats",
    persist_state="session",
    help=_(
        "The pair is trained once per seed (s, s+1, ...): the verdict on Compare then covers how much the result "
        "moves from seed to seed. Each seed adds two runs."
    ),
)
preset_repeats = PRESETS[st.session_state.get("train_preset", next(iter(PRESETS)))].get("repeats", 1)
if repeats != preset_repeats:
    st.button(
        ngettext("Use the preset's {n} seed per pair", "Use the preset's {n} seeds per pair", preset_repeats),
        key="train_use_preset_repeats",
        on_click=use_preset_repeats,
        help=_("The preset leaves the number of seeds you set as it is; this sets the preset's own."),
    )
test_size = dataset.sizes["test"]
st.caption(
    _(
        "With {texts} test texts, differences under about {floor} points of accuracy cannot be told from chance (when "
        "the methods disagree on 1 text in 10); about {needed} test texts tell {points} points apart. More seeds show "
        "how much a result moves by chance; more test texts make each result surer.",
        texts=number(test_size),
        floor=f"{verdict.noise_floor(test_size):.1f}",
        needed=number(verdict.texts_needed()),
        points=f"{verdict.RESOLUTION_POINTS:g}",
    )
)
c1, c2 = st.columns(2)
help_pair = _("Same data and epochs with each method, once per seed, for a fair comparison.")
pair = c1.button(
    _("Queue a pair: full fine-tuning + LoRA, {seeds} seeds", seeds=repeats)
    if repeats > 1
    else _("Queue a pair: full fine-tuning + LoRA"),
    key="train_pair",
    type="primary",
    disabled=not model_ok or bool(problems),
    help=help_pair,
)
single_off = not model_ok or bool(configs[method].problems())
single = c2.button(
    _("Queue one {method} run", method=_(METHOD_NAMES[method])),
    key="train_single",
    disabled=single_off,
    help=_("Just the method chosen above."),
)
if pair or single:
    with ui.sessions(write=True)() as s:
        try:
            target = s.get(Dataset, dataset.id)
            if target is None:
                raise reading.DataError(_("This dataset was just deleted. Pick another one."))
            if pair:
                __, queued = runs.create_comparison(
                    s, target, source, configs["lora"], lr, estimates, repeats=int(repeats)
                )
            else:
                queued = [runs.create_run(s, target, source, configs[method], estimate=estimates.get(method))]
        except (runs.ConfigError, reading.DataError) as e:
            ui.problems(_("Nothing was queued:"), e.problems)
            st.stop()
    ui.keep_worker_running()
    st.switch_page("pages/runs.py", query_params={"run": str(queued[0].id)})

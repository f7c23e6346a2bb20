"""Data: upload train / dev / test CSVs (or take the demo set), see them checked, store them."""

import re
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from core import i18n, words
from core.data import checking, datasets, reading, splitting
from core.i18n import N_, _, ngettext
from core.results import tables, verdict
from core.store.db import Dataset
from core.training import coverage, models

ui.speak()  # the visitor's language (core.i18n), before any word of the page

HELP = {
    "train": N_("The examples the model learns from: one text and its label per row."),
    "dev": N_("Examples used while training to keep the best version of the model."),
    "test": N_("Examples kept apart until the end, to score the finished model fairly."),
}
UPLOAD_LABELS = {"train": N_("Train CSV"), "dev": N_("Dev CSV"), "test": N_("Test CSV")}
SHARE_LABELS = {"train": N_("Train %"), "dev": N_("Dev %"), "test": N_("Test %")}
PREVIEWS = {
    "train": N_("train preview"),
    "dev": N_("dev preview"),
    "test": N_("test preview"),
    "file": N_("file preview"),
}


@st.cache_data(max_entries=4, show_spinner=_("Checking the files…"))
def check(
    files: tuple,
    text_column,
    label_column,
    class_names: tuple | None,
    split: tuple | None = None,
    language: str | None = None,
) -> checking.DatasetCheck:
    """split: (shares, seed) when one file is to be split into train, dev and test. language: the reader's, whose
    words the problems are written in (a part of the cache key)."""
    split_files = {name: reading.SplitFile(file_name, raw) for name, file_name, raw in files}
    names = list(class_names) if class_names else None

    def run(text, label):
        args = (ui.settings(), text, label, names, ui.bundled_tokenizer())
        if split:
            return checking.check_one_file(split_files["data"], *args, shares=split[0], seed=split[1])
        return checking.check_dataset(split_files, *args)

    result = run(text_column, label_column)
    columns = [str(c) for c in next(iter(result.tables.values())).columns] if result.tables else []
    if {text_column, label_column} - set(columns) - {None}:  # columns picked for other files: guess again
        result = run(None, None)
    return result


@st.cache_data(max_entries=4, show_spinner=_("Measuring how much of your text the bundled model knows…"))
def bundled_coverage(*args) -> coverage.Coverage | None:
    """The bundled model's coverage of the checked files (`check`'s arguments; its result comes from its cache)."""
    result, tokenizer = check(*args), ui.bundled_tokenizer()
    if tokenizer is None or not result.ok:
        return None
    texts = {split: frame["text"] for split, frame in result.splits.items()}
    return coverage.measure(tokenizer, texts, models.BUNDLED, ui.settings())


UPLOAD = N_("Upload my CSV files")
ONE_FILE = N_("Upload one file, split for me")
DEMO = N_("Use the bundled demo set")


def split_settings() -> tuple:
    """Train / dev / test shares and the seed of the split, for one uploaded file."""
    cols = st.columns(4)
    shares = tuple(
        int(
            col.number_input(
                _(SHARE_LABELS[split]),
                1,
                98,
                share,
                key=f"data_share_{split}",
                help=_("The share of {split}.", split=checking.split_name(split)),
            )
        )
        for col, split, share in zip(cols, reading.SPLITS, splitting.SHARES)
    )
    seed = cols[3].number_input(
        _("Split seed"),
        0,
        1_000_000,
        0,
        key="data_split_seed",
        help=_("The same seed splits the same file the same way."),
    )
    return shares, int(seed)


def add_dataset() -> None:
    source = st.radio(
        _("Where is your data?"),
        [UPLOAD, ONE_FILE, DEMO],
        format_func=_,
        key="data_source",
        horizontal=True,
        help=_("The demo set is about 2,100 BBC News titles in 5 classes (business, entertainment, ...)."),
    )
    split = None
    if source == DEMO:
        files, class_names = datasets.demo_files()
    else:
        if source == ONE_FILE:
            one = st.file_uploader(
                _("Labelled CSV"),
                ["csv"],
                key="data_one_file",
                help=_(
                    "Every labelled text you have; it is split into train, dev and test, each class in the same "
                    "proportions, and the split is stored with the dataset."
                ),
            )
            uploads = {"data": one}
            split = split_settings()
            if sum(split[0]) != 100:
                return st.error(_("The shares add up to {total} %; make them add up to 100 %.", total=sum(split[0])))
        else:
            cols = st.columns(3)
            uploads = {
                s: c.file_uploader(_(UPLOAD_LABELS[s]), ["csv"], key=f"data_{s}_file", help=_(HELP[s]))
                for s, c in zip(HELP, cols)
            }
        names_file = st.file_uploader(
            _("Class names (optional)"),
            ["txt"],
            key="data_classes_file",
            help=_("A text file with one class name per line, for integer labels: line 1 names label 0, and so on."),
        )
        files = {s: reading.SplitFile(u.name, u.getvalue()) for s, u in uploads.items() if u is not None}
        try:
            class_names = reading.read_class_names(names_file.getvalue(), names_file.name) if names_file else None
        except reading.DataError as e:
            return ui.problems(_("The class-names file could not be read:"), e.problems)
        if not files:
            return st.info(
                _("Upload one labelled CSV (text in column `0`, label in `1`, or any two columns).")
                if split
                else _("Upload a train, a dev and a test CSV (text in column `0`, label in `1`, or any two columns).")
            )
    picked = st.session_state.get("data_text_column"), st.session_state.get("data_label_column")
    named = tuple(class_names or ()) or None
    args = (tuple((s, f.name, f.read()) for s, f in files.items()), *picked, named, split, i18n.language())
    result = check(*args)
    if result.tables:
        columns = [str(c) for c in next(iter(result.tables.values())).columns]
        text, label = result.source["columns"]["text"], result.source["columns"]["label"]
        c1, c2 = st.columns(2)
        help_ = _("Detected automatically; change it if the guess is wrong.")
        c1.selectbox(_("Text column"), columns, columns.index(text), key="data_text_column", help=help_)
        c2.selectbox(_("Label column"), columns, columns.index(label), key="data_label_column", help=help_)
        for split, tab in zip(result.tables, st.tabs([_(PREVIEWS[s]) for s in result.tables])):
            table = result.tables[split]
            encoding = words.encoding_text(result.source[split]["encoding"])
            tab.caption(
                _("{rows} rows, text encoding {encoding}; the first 20:", rows=f"{len(table):,}", encoding=encoding)
            )
            tab.dataframe(table.head(20), hide_index=True)
    if result.label_counts:
        counts = pd.DataFrame(result.label_counts).rename_axis("class").reset_index()
        counts = counts.melt("class", var_name="split", value_name="rows")
        counts["split"] = counts["split"].map(checking.split_name)
        fig = px.bar(
            counts,
            x="class",
            y="rows",
            color="split",
            barmode="group",
            title=_("Label distribution per split"),
            labels={"class": _("class"), "rows": _("rows"), "split": _("split")},
        )
        st.plotly_chart(fig.update_layout(height=340), key="data_label_chart")
    if result.errors:
        return ui.problems(
            _("These problems must be fixed before the data can be stored (nothing was saved):"), result.errors
        )
    for warning in result.warnings:
        st.warning(warning)
    known = bundled_coverage(*args)
    if known is not None and known.poor:
        st.warning(known.warning(), icon=":material/translate:")
    if split:
        n = len(result.splits["test"])
        st.info(
            _(
                "Split {sizes} rows (train / dev / test). With {n} test texts, differences under about {floor} "
                "points of accuracy cannot be told from chance; about {needed} test texts tell {points} points apart. "
                "A larger test share makes each result surer.",
                sizes=" / ".join(str(len(result.splits[s])) for s in reading.SPLITS),
                n=f"{n:,}",
                floor=f"{verdict.noise_floor(n):.1f}",
                needed=f"{verdict.texts_needed():,}",
                points=f"{verdict.RESOLUTION_POINTS:g}",
            )
        )
    first = files.get("data") or files["train"]
    train_name = re.sub(r"[-_ .]*train$", "", Path(first.name).stem, flags=re.I)
    # The name suggested for these files, and (language-free) which files it was suggested for: a switch of language
    # keeps what was typed
    if source == DEMO:
        suggested_for, default = datasets.DEMO_NAME, _(datasets.DEMO_NAME)
    elif train_name:
        suggested_for = default = train_name
    else:
        suggested_for, default = "my dataset", _("my dataset")
    # Other files: the suggested name follows them; so it does when the box was gone for a rerun (a problem shown)
    if st.session_state.get("data_name_for") != suggested_for or "data_name" not in st.session_state:
        st.session_state["data_name_for"], st.session_state["data_name"] = suggested_for, default
    name = st.text_input(_("Dataset name"), key="data_name", help=_("How this dataset is listed on the Train page."))
    if st.button(_("Save dataset"), key="data_save", type="primary", help=_("Store the checked data for training.")):
        with ui.sessions(write=True)() as s:
            same = datasets.find_same_dataset(s, result)
            if same is not None:
                return st.info(_("This data is already stored as '{name}'. Nothing new was saved.", name=same.name))
            try:
                stored = datasets.save_dataset(s, ui.settings(), result, name)
            except reading.DataError as e:
                return ui.problems(_("Not saved:"), e.problems)
        st.success(
            _(
                "Saved '{name}': {rows} training rows, {classes} classes.",
                name=stored.name,
                rows=f"{stored.sizes['train']:,}",
                classes=len(stored.classes),
            )
        )
        st.page_link("pages/train.py", label=_("Next: train a model on it"), icon=":material/arrow_forward:")


def ask_delete(dataset_id: int | None) -> None:
    st.session_state["data_delete_asked"] = dataset_id


def delete(dataset_id: int) -> None:
    ui.speak()  # a callback runs before the page: its message in the visitor's language
    ask_delete(None)
    with ui.sessions(write=True)() as s:
        dataset = s.get(Dataset, dataset_id)
        if dataset is None:
            return
        if tables.active_runs_on(s, dataset_id):  # a run was queued on it since the question was asked
            return ui.flash(
                "warning",
                _("'{name}' was not deleted: a run on it is waiting or training.", name=dataset.name),
            )
        datasets.delete_dataset(s, ui.settings(), dataset)
        ui.flash("success", _("Deleted '{name}'. Its runs stay in the history.", name=dataset.name))


st.title(_("Data"))
st.caption(
    _("A dataset is three CSV files with a text column and a label column: train, dev and test.")
    + " "
    + ui.glossary("dev set")
)
add_dataset()

st.subheader(_("Stored datasets"))
with ui.sessions()() as s:
    busy_at_start = tables.any_active(s)


@st.fragment(run_every=2.0 if busy_at_start else None)  # while runs wait or train, their counts stay current
def stored_datasets() -> None:
    ui.speak()  # a fragment's rerun runs alone, in a thread of its own
    ui.show_flash()
    with ui.sessions()() as s:
        stored = tables.datasets_frame(s)
        if tables.any_active(s) != busy_at_start:
            st.rerun()  # a run started or ended: poll, or stop polling
    if stored.empty:
        return st.info(_("No dataset is stored yet."))
    shown, times = ui.local_times(stored.drop(columns="id"), {"created": True})
    ui.dataframe(shown, times)
    by_id = stored.set_index("id")
    chosen = st.selectbox(
        _("Delete a dataset"),
        list(by_id.index),
        None,
        by_id["name"].get,
        key="data_delete_choice",
        placeholder=_("Choose one"),
        help=_("Its stored files are removed; past runs keep their results."),
    )
    if chosen is None:
        return
    busy = int(by_id.loc[chosen, "active runs"])
    if busy:
        return st.warning(
            ngettext(
                "{n} run on it is still waiting or training: cancel them on the Runs page first, or wait until they "
                "finish.",
                "{n} runs on it are still waiting or training: cancel them on the Runs page first, or wait until "
                "they finish.",
                busy,
            )
        )
    if st.session_state.get("data_delete_asked") != chosen:
        st.button(
            _("Delete it…"),
            key="data_delete",
            on_click=ask_delete,
            args=(int(chosen),),
            help=_("Asks first; no undo."),
        )
        return
    st.warning(
        _(
            "Delete '{name}' for good? Its stored files are removed and cannot be brought back; the runs trained on "
            "it keep their results.",
            name=by_id.loc[chosen, "name"],
        )
    )
    c1, c2 = st.columns(2)
    c1.button(_("Yes, delete it"), key="data_delete_yes", on_click=delete, args=(int(chosen),), help=_("No undo."))
    c2.button(_("No, keep it"), key="data_delete_no", on_click=ask_delete, args=(None,), help=_("Nothing is removed."))


stored_datasets()

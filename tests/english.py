"""What of a page drawn by AppTest is still English: every piece of text a person would read (titles, text, labels,
help, placeholders, options, table headers and cells, chart titles, legends and hover text, shaded HTML), less the
names that stay as they are (KEPT) and what the person gave (their data's texts and class names, file names).

    at = open_in_chinese("compare")
    assert not english_left(at)"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent

# Names that are the same in every language: methods, metrics, models, formats, units, the product's name.
KEPT = {
    "LoRA",
    "Lab",
    "BERT",
    "MiniLM",
    "F1",
    "macro",
    "CSV",
    "TXT",
    "JSON",
    "GPU",
    "UTC",
    "CPU",
    "CUDA",
    "MPS",
    "UTF",
    "GBK",
    "Big5",
    "Excel",
    "SQLite",
    "PostgreSQL",
    "Ray",
    "Hugging",
    "Face",
    "Optuna",
    "captum",
    "peft",
    "transformers",
    "PyTorch",
    "torch",
    "bf16",
    "float32",
    "THUCNews",
    "McNemar",
    "ERASER",
    "Streamlit",
    "BBC",
    "Language",  # the switch names itself in both languages: 语言 · Language, English / 中文
    "English",
    "MB",
    "GB",
    "KB",
    "ms",
    "min",
    "id",
    "ID",
    "r",
    "lr",
    "alpha",
    "dropout",
    "zip",
    "safetensors",
}
# Fields of an element's message that hold words a person reads.
TEXT_FIELDS = {
    "body",
    "label",
    "help",
    "placeholder",
    "options",
    "formattedOptions",
    "caption",
    "text",
    "title",
    "delta",
    "value",
    "default",
    "tabs",
    "rawValues",
    "captions",
}
FIGURE_FIELDS = {"text", "name", "hovertemplate", "title", "ticktext", "legendgrouptitle"}  # a chart's words
_SKIP = re.compile(
    r"<style.*?</style>|<script.*?</script>|<[^>]+>"  # markup, not words
    r"|:material/[a-z_]+:|https?://\S+|(?<!\S)/[\w/?=&.-]*|`[^`]*`"  # icons, addresses, the app's own links, code
    r"|\b[\w.-]+/[\w./-]+|\b[\w-]+\.(?:csv|txt|json|py|db|zip|toml|md|log|png|safetensors)\b"  # model ids, files
    r"|\b[A-Za-z0-9]+(?:-[A-Za-z0-9]+){2,}\b",  # a hub id without its owner: bert-base-chinese, all-MiniLM-L6-v2
    re.S | re.I,
)
_WORD = re.compile(r"[A-Za-z][A-Za-z']+")


def words_left(text: str, kept: set[str]) -> list[str]:
    """The English words of a text, outside KEPT, `kept`, markup, addresses, model ids and file names."""
    plain = _SKIP.sub(" ", html.unescape(text))
    return [w for w in _WORD.findall(plain) if w not in KEPT and w not in kept and w.lower() not in kept]


def _strings(value, key: str = "") -> list[str]:
    if isinstance(value, str):
        return [value] if key in TEXT_FIELDS else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, k)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, key)]
    return []


def _figure_strings(spec: str) -> list[str]:
    """A plotly figure's words: titles, names, annotations, hover templates, tick labels that are text."""
    found = []

    def walk(value, key=""):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and key in FIGURE_FIELDS:
            found.append(re.sub(r"%\{[^}]*\}|<extra>.*?</extra>", " ", value))

    walk(json.loads(spec))
    return found


def texts(at) -> list[str]:
    """Every piece of text on the drawn page, in order."""
    found = []

    def visit(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            kind = proto.DESCRIPTOR.name
            if kind == "PlotlyChart":
                found.extend(_figure_strings(proto.spec))
            elif kind.lower() in ("arrow", "arrowdataframe", "dataframe"):  # st.dataframe and st.table
                frame = node.value
                found.extend(str(c) for c in frame.columns)
                found.extend(str(v) for v in frame.to_numpy().ravel() if v is not None and v == v)  # an empty cell
                for column in json.loads(getattr(proto, "columns", "") or "{}").values():  # a column's label, help
                    found.extend(str(column[k]) for k in ("label", "help") if (column or {}).get(k))
            else:
                found.extend(_strings(MessageToDict(proto)))
        for child in getattr(node, "children", {}).values():
            visit(child)

    visit(at._tree)
    return found


def english_left(at, kept: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Each piece of text that still has an English word, with the words: empty when the page is all translated.
    `kept`: words of the test's own data (its class names, its texts) that are not the dashboard's."""
    out = []
    for text in texts(at):
        left = words_left(text, set(kept))
        if left:
            out.append(f"{' '.join(left)!r} in {text[:160]!r}")
    return out


def open_in_chinese(page: str = "home", timeout: float = 90, **query) -> AppTest:
    """A page of the dashboard drawn by AppTest for a visitor who chose Chinese, with these query parameters."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.session_state["app_language"] = "zh"  # before the first run: app.py's frame picks the language only then
    at.run()
    if page != "home":
        at.switch_page(f"pages/{page}.py")
    at.query_params.update(query)
    return at.run()

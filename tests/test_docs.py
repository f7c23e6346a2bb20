"""README.md and docs/ stay findable: every relative link and image resolves to a file in the repository, every
`#anchor` to a heading there (GitHub's slugs), every repository path or `core.` module named in code exists, and the
README fits a screen or two. A move that leaves a stale link or path behind fails here."""

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# What a path in code must end with to be taken for a repository file (a folder ends with "/").
SUFFIXES = {".py", ".md", ".sh", ".toml", ".csv", ".txt", ".png", ".svg", ".json", ".jsonl", ".cfg", ".ini", ".yml"}

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)^[ \t]*\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")  # [text](target) and ![alt](target)
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)  # [name]: target
HTML_TARGET = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']+)["']""")
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
PATH_TOKEN = re.compile(r"^[\w.-]+(?:/[\w.-]+)+/?$|^[\w.-]+/$")
MODULE_TOKEN = re.compile(r"^core(?:\.\w+)+$")


def pages(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def prose(text: str) -> str:
    """The text that renders as Markdown: fenced blocks and inline code blanked (their lines kept)."""
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    return INLINE_CODE.sub("", text)


def code(text: str) -> list[str]:
    """What is written as code: each fenced block and each inline code span."""
    blocks = [m.group(2) for m in FENCE.finditer(text)]
    outside = FENCE.sub("", text)
    return blocks + [m.group(2) for m in INLINE_CODE.finditer(outside)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lowercase, punctuation dropped, each space a '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, the repeats numbered as GitHub numbers them (name, name-1, name-2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for m in HEADING.finditer(prose(page.read_text(encoding="utf-8"))):
        name = slug(m.group(1))
        found.add(f"{name}-{seen[name]}" if name in seen else name)
        seen[name] = seen.get(name, 0) + 1
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """Each relative link, image or anchor of `page` that points at nothing, as 'page: target (why)'."""
    text = prose(page.read_text(encoding="utf-8"))
    targets = [m.group(1) for rx in (LINK, REFERENCE, HTML_TARGET) for m in rx.finditer(text)]
    problems = []
    for target in targets:
        if SCHEME.match(target) or target.startswith("//"):
            continue  # a web address: not this test's business
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        name = f"{page.relative_to(root)}: {target}"
        if not where.is_relative_to(root.resolve()):
            problems.append(f"{name} (outside the repository)")
        elif not where.exists():
            problems.append(f"{name} (no such file)")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            problems.append(f"{name} (no heading #{anchor} in {where.relative_to(root.resolve())})")
    return problems


def ignored(path: str, root: Path = ROOT) -> bool:
    """Whether .gitignore keeps `path` out of the repository: something made at run time, named by the docs."""
    rules = (root / ".gitignore").read_text(encoding="utf-8").splitlines()
    parts = path.strip("/").split("/")
    for rule in (r.strip() for r in rules):
        if not rule or rule.startswith(("#", "!")):
            continue
        folder_only, anchored = rule.endswith("/"), "/" in rule.rstrip("/")
        pattern = rule.strip("/")
        for i in range(1, len(parts) + 1):
            is_folder = i < len(parts) or path.endswith("/")
            if folder_only and not is_folder:
                continue
            if fnmatch.fnmatch("/".join(parts[:i]) if anchored else parts[i - 1], pattern):
                return True
    return False


def module_problem(name: str, root: Path) -> str | None:
    """Why `core.a.b[.attribute]` names nothing in the tree, or None: a module or package, then at most one name
    defined in it."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:i])
        source = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if source.is_file():
            break
    else:
        return "no such module"
    rest = parts[i:]
    if i == 1 and rest:
        return f"no module core.{rest[0]}"
    if not rest:
        return None
    defined = rf"^\s*(?:async\s+def|def|class)\s+{rest[0]}\b|^\s*{rest[0]}\s*(?::[^=\n]*)?=|\bimport\b.*\b{rest[0]}\b"
    if not re.search(defined, source.read_text(encoding="utf-8"), re.M):
        return f"{rest[0]} is not defined in {source.relative_to(root)}"
    return None


def stale_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Each repository path (`core/jobs/worker.py`, `assets/demo/`) or module (`core.jobs.worker.supervise`) that
    `page` names in code and the tree does not hold. Paths are taken from the repository's root; a path whose first
    folder the repository does not have (`OUT/table.md`, `~/.ray/...`) or that .gitignore ignores is not checked."""
    problems = []
    for snippet in code(page.read_text(encoding="utf-8")):
        for token in re.split(r"[\s\"'`(),;:=\[\]{}<>|*]+", snippet):
            token = token.rstrip(".").removeprefix("./")
            name = f"{page.relative_to(root)}: {token}"
            if MODULE_TOKEN.match(token):
                why = module_problem(token, root)
                if why:
                    problems.append(f"{name} ({why})")
            elif PATH_TOKEN.match(token) and (token.endswith("/") or Path(token).suffix in SUFFIXES):
                first = token.split("/")[0]
                if (root / first).exists() and not ignored(token, root) and not (root / token).exists():
                    problems.append(f"{name} (no such path)")
    return problems


def test_readme_fits_a_screen_or_two():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the rest to docs/"


def test_readme_keeps_the_two_commands_and_leads_to_every_doc():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = "\n".join(code(text))
    assert re.search(r"^make run\b", blocks, re.M) and re.search(r"^make test\b", blocks, re.M)  # .ci/run: make test
    linked = {(ROOT / m.group(1).partition("#")[0]).resolve() for m in LINK.finditer(prose(text))}
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs, "docs/ holds what does not fit the README"
    assert [d.name for d in docs if d.resolve() not in linked] == []


def test_every_link_image_and_anchor_resolves():
    assert [problem for page in pages() for problem in broken_links(page)] == []


def test_every_path_and_module_named_in_code_exists():
    assert [problem for page in pages() for problem in stale_paths(page)] == []


def test_the_architecture_map_names_every_module_of_core():
    """docs/architecture.md's map of core/ cannot drift from the tree: a module added or moved needs its line."""
    named = set(" ".join(code((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))).split())
    modules = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "core").rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and "migrations" not in p.parts
    }
    assert sorted(modules - named) == []


def test_the_checks_catch_what_a_move_leaves_behind(tmp_path):
    """The checks above can fail: a tree whose README points at a moved file, a lost heading and a moved module."""
    (tmp_path / ".gitignore").write_text("bench/out/\n", encoding="utf-8")
    (tmp_path / "core" / "jobs").mkdir(parents=True)
    (tmp_path / "core" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "core" / "jobs" / "__init__.py").write_text("", encoding="utf-8")
    (tmp_path / "core" / "jobs" / "worker.py").write_text("def supervise():\n    pass\n", encoding="utf-8")
    (tmp_path / "bench").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "using.md").write_text("# Using it\n\n## Reading the verdict: how sure\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# LoRA Lab\n\n## Two commands\n\n"
        "[ok](docs/using.md#reading-the-verdict-how-sure) [ok](#two-commands) [web](https://example.com/x)\n"
        "[moved](docs/estimates.md) [lost](docs/using.md#models) [here](#tests) ![shot](assets/screens/runs.png)\n\n"
        "`core/jobs/worker.py` `core.jobs.worker.supervise` `bench/out/table.md` `OUT/results.jsonl`\n"
        "`core/estimate.py` `core.estimate` `core.jobs.worker.claim` `bench/estimate_bench.py`\n"
        "```bash\npython -m core.train RUN_ID   # [not a link](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(readme, tmp_path) == [
        "README.md: docs/estimates.md (no such file)",
        "README.md: docs/using.md#models (no heading #models in docs/using.md)",
        "README.md: #tests (no heading #tests in README.md)",
        "README.md: assets/screens/runs.png (no such file)",
    ]
    assert stale_paths(readme, tmp_path) == [
        "README.md: core.train (no module core.train)",
        "README.md: core/estimate.py (no such path)",
        "README.md: core.estimate (no module core.estimate)",
        "README.md: core.jobs.worker.claim (claim is not defined in core/jobs/worker.py)",
        "README.md: bench/estimate_bench.py (no such path)",
    ]


def test_slugs_follow_github():
    assert slug("Disk: what a run keeps and what Delete removes") == "disk-what-a-run-keeps-and-what-delete-removes"
    assert slug("stackoverflow_en, 5 epochs") == "stackoverflow_en-5-epochs"
    assert slug("The `core/` layers, and [import-linter](https://x.y)") == "the-core-layers-and-import-linter"

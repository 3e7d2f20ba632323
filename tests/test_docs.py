"""The code states contracts: no dates, machine names or session narration in src/, and config-field
docstrings short enough to read in `--help` (what, default, valid values, a link)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
FORBIDDEN = re.compile(r"20[0-9]{2}-[0-9]{2}-[0-9]{2}|session|Xeon|EPYC")
MAX_FIELD_DOC_LINES = 3


def _src_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*") if p.is_file() and p.suffix in {".py", ".toml", ".md", ".txt"})


def _show(p: Path) -> Path:
    return p.relative_to(ROOT) if p.is_relative_to(ROOT) else p


def _forbidden_lines(paths: list[Path]) -> list[str]:
    return [
        f"{_show(p)}:{i}: {line.strip()}"
        for p in paths
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]


def _long_field_docs(paths: list[Path]) -> list[str]:
    """Docstrings (a string statement right after an assignment in a class body) over the limit."""
    found = []
    for p in (p for p in paths if p.suffix == ".py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            for a, b in zip(node.body, node.body[1:]):
                doc = b.value.value if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) else None
                if isinstance(a, ast.AnnAssign) and isinstance(doc, str):
                    lines = len(doc.strip().splitlines())
                    if lines > MAX_FIELD_DOC_LINES:
                        found.append(f"{_show(p)}:{b.lineno}: {ast.unparse(a.target)} ({lines} lines)")
    return found


DOC_LINK = re.compile(r"\bdocs/[\w/.-]+?\.md")


def _dead_doc_links(paths: list[Path]) -> list[str]:
    """`docs/....md` paths named in the files that do not exist."""
    return [
        f"{_show(p)}: {link}"
        for p in paths
        for link in sorted(set(DOC_LINK.findall(p.read_text())))
        if not (ROOT / link).exists()
    ]


def _mine() -> list[Path]:
    return _src_files()


def test_src_has_no_dates_machine_names_or_session_narration():
    assert not _forbidden_lines(_mine()), "\n".join(_forbidden_lines(_mine()))


def test_config_field_docstrings_are_at_most_three_lines():
    assert not _long_field_docs(_mine()), "\n".join(_long_field_docs(_mine()))


def test_docs_pages_named_in_src_exist():
    assert not _dead_doc_links(_mine()), "\n".join(_dead_doc_links(_mine()))


def test_the_checks_catch_what_they_look_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('class C:\n    x: int = 1\n    """a\n    b\n    c\n    d (measured 2026-12-02)"""\n')
    assert len(_forbidden_lines([bad])) == 1
    (long,) = _long_field_docs([bad])
    assert long.endswith("x (4 lines)")
    bad.write_text('"""See docs/nowhere.md and docs/algorithm.md#projection."""\n')
    (dead,) = _dead_doc_links([bad])
    assert dead.endswith("docs/nowhere.md")


def test_every_campaign_folder_is_in_the_experiments_index():
    index = (ROOT / "experiments" / "README.md").read_text()
    folders = [p.name for p in (ROOT / "experiments").iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    missing = [f for f in folders if f"{f}/" not in index and f"`{f}/`" not in index]
    assert folders and not missing, f"experiments/README.md does not list {missing}"


def test_cheap_default_page_tables_are_the_generated_ones(load_benchmark):
    """docs/results/cheap-default.md holds the tables compare.py makes from the exported runs and the
    cost run's JSON (a results page's table is generated, not typed)."""
    module = load_benchmark("compare")
    generated = module.tables()
    assert module.page_tables(module.PAGE.read_text()) == generated, (
        "run experiments/cheap-default/compare.py --write-page"
    )
    assert "| Hopper-v5 |" in generated and "| SAC |" in generated

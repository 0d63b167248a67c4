"""The README and docs/ stay short, linked and true to the committed benchmark results (no training here).

The README keeps the two commands and one results table; detail lives in one page per stage under docs/. The
results tables are made by ``benchmarks/tables.py`` from ``benchmarks/results/*.json``: a table that differs
from what the script makes now is stale, and ``python benchmarks/tables.py --write`` fixes it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = ["architecture", "design", "environments", "datasets", "flow", "lam", "imitation", "train",
         "skills", "sweeps", "benchmarks"]
COMMANDS = [
    "bash scripts/setup.sh && .venv/bin/python -m rl_laof.train --algo ppo --latent laof",
    "bash scripts/setup.sh --dev && .venv/bin/python -m pytest -q",
]
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _tables():
    """benchmarks/tables.py as a module (benchmarks/ is not a package)."""
    name = "_benchmarks_tables"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "tables.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def _links(path: Path) -> list[str]:
    """Link targets of a markdown page, outside code blocks and code spans."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def _markdown_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_is_short():
    n = len(README.read_text().splitlines())
    assert n <= 300, f"README.md has {n} lines (at most 300): move detail to a page under docs/"


def test_readme_keeps_the_two_commands_verbatim():
    lines = README.read_text().splitlines()
    for command in COMMANDS:
        assert command in lines, f"README.md must keep this command on a line of its own: {command}"


@pytest.mark.parametrize("page", PAGES)
def test_every_docs_page_exists_and_the_readme_links_it(page):
    path = DOCS / f"{page}.md"
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    targets = {t.split("#", 1)[0] for t in _links(README)}
    assert f"docs/{page}.md" in targets, f"README.md does not link docs/{page}.md"


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_in_the_repository(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:, ...) or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists() or not path.is_relative_to(ROOT):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files or files outside the repository: {broken}"


@pytest.mark.parametrize("page", _markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_generated_tables_match_the_committed_results(page):
    tables = _tables()
    results = tables.load_results()
    text = page.read_text()
    for m in tables.BLOCK.finditer(text):
        want = tables.block(m.group(2), results)
        assert m.group(3).rstrip("\n") == want, (
            f"the '{m.group(2)}' table in {page.relative_to(ROOT)} is stale: "
            "run python benchmarks/tables.py --write")
    assert tables.render(text, results) == text


def test_readme_has_the_results_table():
    tables = _tables()
    blocks = [m.group(2) for m in tables.BLOCK.finditer(README.read_text())]
    assert blocks.count("readme") == 1, "README.md needs one <!-- results:readme --> ... <!-- /results:readme -->"
    table = tables.readme()
    assert table.startswith("| benchmark | figure | value [95 % interval] | command |")
    for name in ("latent_quality", "train"):  # committed results: their headline rows must be there
        assert f"| `{name}`" in table


def test_readme_table_skips_missing_results_and_shows_new_ones():
    tables = _tables()
    results = {k: v for k, v in tables.load_results().items() if k not in ("imitation", "envs")}
    table = tables.readme(results)
    assert "| `imitation`" not in table and "| `envs`" not in table
    assert "`imitation.json` (`python benchmarks/bench_imitation.py`)" in table
    assert "does not exist yet" in tables.block("imitation", results)

    # a run of bench_imitation writes these keys (benchmarks/bench_imitation.py); its rows then appear
    imitation = {"ret_random": 0.05, "ret_heldout_random": 0.04, "raw_ret_random": 30.0, "lafp_vs_bc_latency": 1.5}
    for i, name in enumerate(tables.IMITATION_ROWS):
        key = name[0]
        imitation.update({f"ret_{key}": 0.3 + i / 100, f"ret_{key}_lo": 0.2, f"ret_{key}_hi": 0.4,
                          f"ret_heldout_{key}": 0.3, f"raw_ret_{key}": 200.0, f"action_mse_{key}": 0.5})
    table = tables.readme({**results, "imitation": imitation})
    lafp = f"{imitation['ret_laof_lafp']:.3f} [0.200, 0.400]"
    assert f"| `imitation` | **LAFP (LAOF)**, 1 % labels, return / data's return | {lafp} |" in table
    assert "`imitation.json`" not in table.split("\n\n", 1)[1]  # no longer listed as missing
    assert f"| **LAFP (LAOF)** | {lafp} |" in tables.block("imitation", {"imitation": imitation})


def test_write_replaces_only_what_is_between_the_markers():
    tables = _tables()
    results = tables.load_results()
    text = "before\n<!-- results:readme -->\nold table\n<!-- /results:readme -->\nafter\n"
    new = tables.render(text, results)
    assert new.startswith("before\n<!-- results:readme -->\n| benchmark |")
    assert new.endswith("\n<!-- /results:readme -->\nafter\n")
    assert "old table" not in new
    assert tables.render(new, results) == new


def test_seeded_results_say_where_they_came_from():
    for name in ("envs", "data", "flow", "skills"):
        path = ROOT / "benchmarks" / "results" / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        if not r.get("seeded_from_readme"):
            continue  # a real run has replaced the seed
        assert re.fullmatch(r"[0-9a-f]{40}", r["source"]["commit"]), f"{name}.json: source.commit"
        assert r["source"]["command"].startswith(f"python benchmarks/bench_{name}.py"), f"{name}.json: command"

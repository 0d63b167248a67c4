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


def test_a_budget_in_a_headline_is_the_results_files_own():
    tables = _tables()
    results = tables.load_results()
    train = {**results["train"], "total_steps": 60000}
    assert "| the same: **final return** after 60k agent steps |" in tables.readme({**results, "train": train})
    assert [tables._count(n) for n in (60000, 20480, 512, 4096.0)] == ["60k", "20.5k", "512", "4.1k"]


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


def _with_interval(keys: dict[str, float]) -> dict[str, float]:
    """Results-file keys with a 95 % interval beside each value, as the seeded benchmarks write them."""
    out = dict(keys)
    for key, value in keys.items():
        out[f"{key}_lo"], out[f"{key}_hi"] = value - 0.01, value + 0.01
    return out


def test_imitation_table_shows_the_spread_the_decoder_choice_and_the_tests():
    tables = _tables()
    r = {"ret_random": 0.02, "ret_heldout_random": 0.02, "raw_ret_random": 14.0,
         "decoder_laof_bc": {"idm": 2, "sample": 3}, "decoder_lapo_bc": {"sample": 5},
         "p_laof_bc_vs_lapo_bc": 0.5, "p_raw_laof_bc_vs_lapo_bc": 0.25}
    for key in ("laof_bc", "lapo_bc"):
        r.update(_with_interval({f"ret_{key}": 0.1, f"ret_heldout_{key}": 0.09, f"action_mse_{key}": 0.8,
                                 f"spread_{key}": 0.68}))
        r[f"raw_ret_{key}"] = 60.0
    table = tables.imitation(r)
    assert table.splitlines()[0].endswith("| action spread / data's (own states) | decoder (val) |")
    assert "| latent BC (LAOF) | 0.100 [0.090, 0.110] |" in table
    assert "| 0.680 [0.670, 0.690] | idm 2, sample 3 |" in table
    assert "| 0.680 [0.670, 0.690] | sample |" in table  # one mode over every seed: its name alone
    assert "latent BC LAOF > LAPO p = 0.5 (raw 0.25)" in table
    del r["spread_laof_bc"], r["spread_lapo_bc"]  # a results file from before the spread: the old columns
    assert "spread" not in tables.imitation(r)


def test_train_table_has_every_action_space_its_start_and_the_tests():
    tables = _tables()
    r = {"sps_env_only": 100.0, "start_choice": {"chosen": "laof"},
         "p_laof_vs_drq": 0.02, "p_raw_laof_vs_drq": 0.004}
    for i, (key, _, _) in enumerate(tables.TRAIN_ROWS):
        r.update(_with_interval({f"ret_{key}": 10.0 + i, f"first_eval_{key}": 1.0, f"best_{key}": 20.0,
                                 f"sps_{key}": 90.0}))
    table = tables.train(r)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:-1]
    assert len(rows) == len(tables.TRAIN_ROWS) == 7
    assert ("| raw-action residual around the decoded LAOF policy | LAOF latent BC | 1.0 [1.0, 1.0] | "
            "14.0 [14.0, 14.0]") in table
    assert "LAOF > drq p = 0.02 (raw 0.004)" in table
    assert "chosen on the `val` evaluations: `laof`" in table
    assert "held-out episodes" not in table  # an older train.json: no replays, no second table
    r.update(_with_interval({"heldout_laof": 80.0, "start_heldout_laof": 70.0, "gain_heldout_laof": 10.0,
                             "heldout_none": 5.0}))
    table = tables.train(r)
    assert "| **LAOF's residual latent space** (the main job) | 70.0 [70.0, 70.0] | 80.0 [80.0, 80.0] | " \
           "10.0 [10.0, 10.0] |" in table
    assert "| raw actions, PPO from scratch | – | 5.0 [5.0, 5.0] | – |" in table


def test_skills_table_per_task_and_ppo_rows():
    tables = _tables()
    tasks = ["walker-stand", "walker-walk", "walker-run"]
    r = {"tasks": tasks, "ppo_task": "walker-walk"}
    for key, _ in tables.SKILL_METHODS:
        r.update(_with_interval({f"ret_{key}": 80.0, f"ret_heldout_{key}": 70.0,
                                 **{f"ret_{key}_{t}": 50.0 + i for i, t in enumerate(tasks)}}))
    for key, _ in tables.SKILL_PPO_ROWS:
        r.update(_with_interval({f"ppo_{key}": 60.0, f"ppo_{key}_first_eval": 30.0, f"ppo_{key}_sps": 100.0}))
    r.update(_with_interval({"sof_code_usage": 0.6, "sof_recon_vs_zero": 0.7}))
    r.update({"p_sof_vs_laof_bc": 0.3, "p_raw_sof_vs_laof_bc": 0.15})
    table = tables.skills(r)
    assert "| method | mean over tasks | walker-stand | walker-walk | walker-run | held-out backgrounds (mean) |" \
        in table
    assert "| **SOF skill policy** (`rgb` flow) | 80.0 [80.0, 80.0] | 50.0 [50.0, 50.0] | 51.0 [51.0, 51.0] | " \
           "52.0 [52.0, 52.0] | 70.0 [70.0, 70.0] |" in table
    assert "| SOF skill tokens + KL to the skill prior (SPiRL) | 30.0 [30.0, 30.0] | 60.0 [60.0, 60.0] |" in table
    assert "share of codes used 0.600 [0.590, 0.610]" in table
    assert "SOF > LAOF latent BC p = 0.3 (raw 0.15)" in table

"""The layers hold (docs/architecture.md): import-linter's contracts in setup.cfg are kept, every module sits in
a layer, and no import hides inside a function unless it says why it is deferred."""

from __future__ import annotations

import ast
import configparser
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rl_laof", "envs", "agents", "sweeps")


def _layer_modules() -> set[str]:
    """Every module named in the layers contract."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    names: set[str] = set()
    for line in cfg["importlinter:contract:layers"]["layers"].split("\n"):
        for part in line.replace(":", "|").split("|"):
            if part.strip():
                names.add(part.strip())
    return names


def test_the_import_contracts_are_kept():
    code = ("from importlinter.cli import lint_imports; "
            "raise SystemExit(lint_imports(config_filename='setup.cfg', no_cache=True, no_logo=True))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"lint-imports: a contract is broken\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
    assert "broken" not in proc.stdout.lower().replace("0 broken", "")


def test_every_module_of_rl_laof_sits_in_a_layer():
    """A new module or package directly under rl_laof/ must be placed in the tower (setup.cfg), not beside it."""
    layers = _layer_modules()
    assert {"envs", "agents", "sweeps"} <= layers
    outside = []
    for path in sorted((ROOT / "rl_laof").iterdir()):
        if path.name.startswith(("_", ".")) or (path.is_file() and path.suffix != ".py"):
            continue
        if path.is_dir() and not (path / "__init__.py").exists():
            continue
        name = f"rl_laof.{path.stem}"
        if name not in layers:
            outside.append(name)
    assert not outside, f"not in any layer of setup.cfg's [importlinter:contract:layers]: {outside}"


def _local_imports(path: Path) -> list[str]:
    """Imports inside functions whose line does not say ``# deferred: <why>``."""
    lines = path.read_text().splitlines()
    found = []
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)) and "# deferred:" not in lines[sub.lineno - 1]:
                    found.append(f"{path.relative_to(ROOT)}:{sub.lineno}: {lines[sub.lineno - 1].strip()}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_hides_in_a_function_without_a_reason(package):
    """Imports sit at the top of their module; one that must wait (an optional or heavy dependency, EGL
    ordering) says why on its line: ``# deferred: <reason>``."""
    found = [hit for path in sorted((ROOT / package).rglob("*.py")) for hit in _local_imports(path)]
    assert not found, "function-local imports without '# deferred: <reason>':\n" + "\n".join(found)


MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines():
    """A function of the libraries (rl_laof, agents, sweeps) fits on a screen: a longer one is split into named
    phases (the training loops are: rl_laof.loop, train_lam's open / data / loop / report)."""
    long = []
    for package in ("rl_laof", "agents", "sweeps"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1  # decorators aside, docstring included
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them into named helpers):\n" + "\n".join(long)


# --------------------------------------------------------------------------- one name per stage

#: stage -> its config-file section (None: the stage takes no config file), its docs page (None: covered by a
#: page of another name), and its run folder (a function of rl_laof.runs and its arguments; None: the folders every
#: later stage reads, runs/experts and runs/datasets, keep their names)
STAGES = {
    "expert": (None, None, None),
    "collect": (None, None, None),
    "flow": (None, "flow", None),
    "lam": ("lam", "lam", ("lam_dir", ("cheetah-run", "ds", "laof", "quick", 0))),
    "imitation": ("imitation", "imitation", ("imitation_dir", ("cheetah-run", "ds", "laof-bc", "quick", 0))),
    "skills": ("skills", "skills", ("skills_dir", ("walker-multitask", "ds", "quick", 0))),
    "train": ("train", "train", ("train_dir", ("cheetah-run", "laof-bc"))),
}


def _console_scripts() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in line.split("=", 1)) for line in lines if line.strip())


def _shim_target(stage: str) -> str:
    """The module whose ``main`` the ``python -m rl_laof.<stage>`` shim imports."""
    path = ROOT / "rl_laof" / stage / "__main__.py"
    path = path if path.exists() else ROOT / "rl_laof" / f"{stage}.py"
    found = [node.module for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.ImportFrom) and any(a.name == "main" for a in node.names)]
    assert len(found) == 1, f"{path.relative_to(ROOT)}: import main once, from its command"
    return found[0]


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_has_one_name(stage, monkeypatch):
    """The command, its module under rl_laof.commands, its console script, its config-file section, its docs page
    and its run folder are all named as the stage (docs/architecture.md, "Names")."""
    from rl_laof import cli, runs
    from rl_laof.config_file import SECTIONS

    section, page, folder = STAGES[stage]
    shim = f"rl_laof.{stage}.__main__" if (ROOT / "rl_laof" / stage).is_dir() else f"rl_laof.{stage}"
    assert importlib.util.find_spec(shim) is not None, f"python -m rl_laof.{stage} has no module"
    assert _shim_target(stage) == f"rl_laof.commands.{stage}"
    assert stage in cli.STAGE_COMMANDS  # its messages name python -m rl_laof.<stage>
    command = importlib.import_module(f"rl_laof.commands.{stage}")
    assert callable(command.main) and callable(command.main_entry)
    assert _console_scripts()[f"rl-laof-{stage}"] == f"rl_laof.commands.{stage}:main_entry"
    assert (section in SECTIONS) if section else (stage not in SECTIONS)
    assert section in (None, stage)
    if page is not None:
        assert page == stage and (ROOT / "docs" / f"{page}.md").is_file()
    if folder is not None:
        monkeypatch.setenv("RL_LAOF_RUNS", "/runs-root")
        name, args = folder
        path = getattr(runs, name)(*args)
        assert path.relative_to(runs.runs_root()).parts[0] == stage, path


def test_every_command_is_a_console_script_and_every_section_a_stage():
    from rl_laof import cli
    from rl_laof.config_file import SECTIONS

    # every module but the private ones (_common: what several commands share) is a command
    commands = sorted(p.stem for p in (ROOT / "rl_laof" / "commands").glob("*.py") if not p.stem.startswith("_"))
    assert commands == sorted(["expert", "collect", "flow", "lam", "imitation", "skills", "train", "evaluate",
                               "inspect", "multitask", "demo"])
    want = {f"rl-laof-{c}": f"rl_laof.commands.{c}:main_entry" for c in commands}
    assert _console_scripts() == {**want, "rl-laof-tune": "sweeps.tune:main_entry"}
    assert set(SECTIONS) == {section for section, _, _ in STAGES.values() if section}
    assert set(cli.STAGE_COMMANDS) == {*STAGES, "evaluate"} and _shim_target("evaluate") == "rl_laof.commands.evaluate"


def test_one_evaluation_seed_defined_once_in_envs():
    """``EVAL_SEED`` is assigned once in the repository's code, in envs.rollout (the lowest layer), and the agents'
    evaluations use it."""
    import agents.drq
    import agents.expert
    import agents.training
    import envs.rollout

    found = []
    for top in ("rl_laof", "envs", "agents", "sweeps", "benchmarks", "tests", "scripts"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
                found += [f"{path.relative_to(ROOT)}:{node.lineno}" for t in targets
                          if isinstance(t, ast.Name) and t.id == "EVAL_SEED"]
    assert len(found) == 1 and found[0].startswith("envs/rollout.py:"), found
    assert envs.rollout.EVAL_SEED == 50_000
    assert agents.training.EVAL_SEED is agents.drq.EVAL_SEED is agents.expert.EVAL_SEED is envs.rollout.EVAL_SEED

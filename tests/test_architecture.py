"""The layers hold (docs/architecture.md): import-linter's contracts in setup.cfg are kept, every module sits in
a layer, and no import hides inside a function unless it says why it is deferred."""

from __future__ import annotations

import ast
import configparser
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

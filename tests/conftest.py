"""Fixtures and helpers shared by the test modules (a test module imports helpers from here, never from another
test module)."""

import argparse
import os
import runpy
import sys
import warnings
from unittest import mock

import numpy as np
import pytest


def _gl_problem() -> str | None:
    from envs.gl import GLUnavailableError, ensure_gl

    try:
        ensure_gl()
    except GLUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def gl():
    """Headless GL for rendering tests. Missing GL skips locally, but fails in CI (which installs it)."""
    problem = _gl_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install headless GL: {problem}")
        pytest.skip(problem)


@pytest.fixture(scope="session")
def lam_dataset(tmp_path_factory, gl):
    """A real dataset for the learning stages: 3 + 1 + 1 random-action cheetah-run episodes of 40 steps
    (action repeat 4), 32 px, hard distractors, exact and RGB-estimated flow, label splits frac-0 / frac-0.1."""
    from envs.config import DistractorConfig
    from rl_laof.data.collection import collect
    from rl_laof.data.config import CollectConfig
    from rl_laof.flow.targets import fill_flow

    cfg = CollectConfig(expert="random", episodes=3, eval_episodes=1, heldout_bg_episodes=1, val_episodes=0,
                        episode_steps=40, image_size=32, distractors=DistractorConfig.parse("hard"), workers=1,
                        label_fractions=(0.0, 0.1))
    out = tmp_path_factory.mktemp("lam") / "ds"
    collect(cfg, out, progress=False)
    fill_flow(out, "exact", progress=False)  # the oracle tier's
    fill_flow(out, "estimate", progress=False)  # the default (rgb) and estimated tiers'
    return out


def _has_cuda() -> bool:
    """A CUDA device usable from torch or from CuPy (the flow kernels need only CuPy)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except Exception:  # torch missing or broken
        pass
    from rl_laof.flow.backends import cuda_problem

    return cuda_problem() is None


def pytest_report_header(config):
    """Say so when a benchmark is running on this machine: a test run beside it slows it many times over."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "benchmarks"))
    try:
        from bench_args import lock_holder
    finally:
        sys.path.pop(0)
    holder = lock_holder()
    return [f"warning: a benchmark is running ({holder}): this test run slows it many times over (pause it: "
            "kill -STOP <pid>, then kill -CONT <pid>)"] if holder else []


def pytest_collection_modifyitems(config, items):
    has_cuda = _has_cuda()
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device (none found)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


def strip_simulator(path) -> None:
    """Make a dataset folder what a video without a simulator holds: frames, actions, rewards and the RGB flow
    file; no simulator array (``rl_laof.flow.tiers.SIMULATOR_KEYS``) and no exact flow file."""
    import h5py

    from rl_laof.data import format as fmt
    from rl_laof.flow.tiers import SIMULATOR_KEYS

    with h5py.File(path / "dataset.h5", "a") as f:
        for split in fmt.SPLITS:
            for ep in f.get(f"episodes/{split}", {}).values():
                for key in SIMULATOR_KEYS:
                    if key in ep:
                        del ep[key]
    fmt.flow_path(path / "dataset.h5", "exact").unlink()


def key_mask(frames: np.ndarray) -> np.ndarray:
    """(n,3,H,W) uint8 -> (n,H,W) bool: pixels in the exact sky key colour."""
    from envs.assets import KEY_COLOR

    return np.all(frames == np.array(KEY_COLOR, np.uint8)[None, :, None, None], axis=1)


def assert_saved_values_finite(folder) -> int:
    """Every tensor in every torch file (``*.pt``) and SB3 archive (``*.zip``: its ``*.pth`` members) under
    ``folder`` is finite; returns how many files were checked."""
    import io
    import zipfile
    from pathlib import Path

    import torch

    from rl_laof.finite import first_non_finite

    checked = 0
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix == ".pt":
            states = [torch.load(path, map_location="cpu", weights_only=False)]
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                states = [torch.load(io.BytesIO(z.read(n)), map_location="cpu", weights_only=False)
                          for n in z.namelist() if n.endswith(".pth")]
        else:
            continue
        for state in states:
            assert first_non_finite(state) is None, f"{path}: {first_non_finite(state)} is not finite"
        checked += 1
    return checked


def record(distractors: str, steps: int, action_repeat: int = 2, task: str = "cheetah-run", size: int = 64):
    """An episode's frames and exact-flow inputs from the dm_control backend, in the dataset layout."""
    from rl_laof.data.collection import random_episode

    ep, attrs = random_episode(task, distractors, steps, action_repeat, size, seed=5)
    return ep, attrs["camera_fovy"]


class _Parser(BaseException):  # not an Exception: no command's error handling may catch it
    def __init__(self, parser: argparse.ArgumentParser):
        super().__init__()
        self.parser = parser


def _capture(self, *args, **kwargs):
    raise _Parser(self)


def parser_of(command: str) -> argparse.ArgumentParser:
    """The argparse parser ``python -m <command>`` parses its arguments with: the module runs as ``__main__``
    (``runpy``) with ``ArgumentParser.parse_args`` patched to hand the parser back, so nothing runs."""
    with mock.patch.object(argparse.ArgumentParser, "parse_args", _capture), \
            mock.patch.object(sys, "argv", [command]), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module may be imported already
        try:
            runpy.run_module(command, run_name="__main__", alter_sys=False)
        except _Parser as found:
            return found.parser
    raise AssertionError(f"python -m {command} never parsed its arguments")


def refused(main, argv, capsys) -> str:
    """Run a command's ``main`` through the command base: it must end with exit status 2 and one line on stderr,
    which is returned."""
    from rl_laof import cli

    with pytest.raises(SystemExit) as exit_:
        cli.run(main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    return err

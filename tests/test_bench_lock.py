"""One benchmark at a time: a second one is refused at once, naming the first; aggregation-only runs are not."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench_args(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setenv("RL_LAOF_BENCH_LOCK", str(tmp_path / "bench.lock"))
    monkeypatch.delenv("RANK", raising=False)
    return importlib.import_module("bench_args")


def test_a_second_benchmark_is_refused_naming_the_first(bench_args):
    seen = {}

    def first():
        seen["holder"] = bench_args.lock_holder()
        with pytest.raises(SystemExit, match=r"another benchmark is running \(pid \d+: python .*--seeds 5, since"):
            bench_args.alone(lambda: "second", ["--seeds", "1"])
        # aggregating records trains nothing: it may run beside
        assert bench_args.alone(lambda: "report", ["--report-only"]) == "report"
        return "first"

    assert bench_args.lock_holder() is None
    assert bench_args.alone(first, ["--seeds", "5"]) == "first"
    assert seen["holder"].startswith("pid ") and "--seeds 5" in seen["holder"]
    assert bench_args.lock_holder() is None  # released, and the file says nothing any more
    assert bench_args.alone(lambda: "again", []) == "again"


def test_the_lock_holds_across_processes(bench_args, tmp_path):
    """A benchmark in another process (another worktree, another runs root) holds the same machine-wide lock."""
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(BENCHMARKS)!r})
        import bench_args
        bench_args.alone(lambda: (print("holding", flush=True), time.sleep(30)), ["--cells", "x"])
    """)
    env = {"RL_LAOF_BENCH_LOCK": str(tmp_path / "bench.lock"), "PATH": "/usr/bin:/bin"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "holding"
        assert f"pid {child.pid}" in bench_args.lock_holder()
        with pytest.raises(SystemExit, match=f"pid {child.pid}"):
            bench_args.alone(lambda: None, [])
    finally:
        child.kill()
        child.wait()
    assert bench_args.lock_holder() is None  # a killed holder leaves no lock behind


def test_a_torchrun_worker_beside_rank_0_takes_no_lock(bench_args, monkeypatch):
    def rank0():
        monkeypatch.setenv("RANK", "1")
        return bench_args.alone(lambda: "worker", [])

    assert bench_args.alone(rank0, []) == "worker"


def test_every_benchmark_script_runs_alone():
    scripts = sorted(p for p in BENCHMARKS.glob("*.py") if p.name.startswith(("bench_", "study_"))
                     and p.name != "bench_args.py")
    assert scripts
    for p in scripts:
        assert p.read_text().rstrip().endswith('if __name__ == "__main__":\n    alone(main)'), p.name

"""A command stopped by Ctrl-C or by a full disk: one line on stderr (where it stopped, the command that resumes;
the full disk named), exit status 130 or 2, no traceback, nothing half-written that a rerun would trust, and the
same command run again resumes and finishes."""

from __future__ import annotations

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl_laof import cli, progress, runs

ROOT = Path(__file__).resolve().parents[1]
#: the message of torch's zip writer when a write falls short (a full disk): it says neither ENOSPC nor the file
TORCH_SHORT_WRITE = "[enforce fail at inline_container.cc:672] . unexpected pos 600832 vs 600724"


def _stopped(main, argv, capsys, code: int) -> str:
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == code and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def _temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name or ".space-probe" in p.name]


# --------------------------------------------------------------------------- Ctrl-C, in-process

def test_ctrl_c_says_the_stage_the_step_and_the_run_folder(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(progress, "_NEWEST", {})

    def main(argv):
        bar = progress.progress_bar(total=50, initial=4, desc="lam lapo", unit="step", enabled=False,
                                    stream=io.StringIO(), folder=tmp_path / "run")
        for _ in range(3):
            bar.update(1)
        raise KeyboardInterrupt

    main.__module__ = "rl_laof.commands.lam"  # in-process: named as python -m rl_laof.lam, which runs it
    err = _stopped(main, ["--method", "lapo", "--out", str(tmp_path / "run")], capsys, 130)
    assert err.startswith(f"stopped by Ctrl-C in lam lapo at step 7 of 50 (run folder {tmp_path / 'run'})")
    assert f"`python -m rl_laof.lam --method lapo --out {tmp_path / 'run'}` resumes" in err


def test_ctrl_c_before_any_work_and_after_an_iterable_bar(monkeypatch, capsys):
    """Before the first bar the line says so; a bar over an iterable counts the items done, shown or not."""
    monkeypatch.setattr(progress, "_NEWEST", {})

    def setting_up(argv):
        raise KeyboardInterrupt

    assert "stopped by Ctrl-C while setting up; what was finished is kept" in _stopped(setting_up, [], capsys, 130)

    def flow(argv):
        for i in progress.progress_bar(range(5), desc="flow exact", unit="episode", enabled=False, folder="ds"):
            if i == 2:
                raise KeyboardInterrupt

    assert "in flow exact at episode 2 of 5 (run folder ds)" in _stopped(flow, [], capsys, 130)
    for _ in progress.progress_bar(range(3), desc="collect", unit="episode", enabled=False):
        pass
    assert progress.position() == "after collect finished its 3 episodes"


def test_ctrl_c_among_the_imports_is_caught_only_for_a_command(monkeypatch):
    """``python -m rl_laof.<command>`` (or ``sweeps.<command>``, or a console script ``rl-laof-<command>``) imports
    for seconds before ``run``: rl_laof's package catches a Ctrl-C there, and only there (not for a library import, a
    test or a worker process)."""
    import rl_laof

    def command(argv, orig):
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.setattr(sys, "orig_argv", orig)
        return rl_laof._command()

    python = sys.executable
    assert command(["-m", "--out", "a b"], [python, "-u", "-m", "rl_laof.lam", "--out", "a b"]) == \
        "python -m rl_laof.lam --out 'a b'"
    assert command(["-m", "-q"], [python, "-m", "sweeps.tune", "-q"]) == "python -m sweeps.tune -q"
    assert command(["-m", "-q"], [python, "-m", "pytest", "-q"]) is None
    script = "/venv/bin/rl-laof-lam"  # a console script (setup.cfg): named as it was typed
    assert command([script, "--out", "a b"], [python, script, "--out", "a b"]) == "rl-laof-lam --out 'a b'"
    assert command([str(ROOT / "rl_laof" / "collect.py")], [python, "-m", "rl_laof.collect"]) is None  # __mp_main__
    assert command(["-c", "--multiprocessing-fork"], [python, "-c", "...", "--multiprocessing-fork"]) is None
    assert rl_laof._stopped_while_starting.while_starting  # what cli.run looks for to hand Ctrl-C back


# --------------------------------------------------------------------------- a full disk, in-process

def test_the_disk_full_errors_of_torch_and_h5py_are_said_as_one_line(tmp_path, monkeypatch, capsys):
    """torch's short write (on a disk the probe finds full), h5py's "file write failed ... errno = 28" and a plain
    ENOSPC all end as "no space left on <the disk> (writing <file>)"; another error keeps its own words."""
    path = tmp_path / "run" / "model.pt"

    def fails(error: Exception):
        def main(argv):
            with runs.atomic_path(path) as tmp:
                tmp.write_bytes(b"half a file")
                raise error
        return main

    with monkeypatch.context() as m:
        m.setattr(runs, "no_space_left", lambda folder: Path(folder) == path.parent)
        err = _stopped(fails(RuntimeError(TORCH_SHORT_WRITE)), [], capsys, 2)
    assert err.startswith("error: no space left on /") and f"(writing {path})" in err and "enforce" not in err
    assert "free space and rerun the same command" in err
    assert not path.exists() and not _temporary_files(tmp_path)
    h5py_close = RuntimeError(f"Can't close file (file write failed: time = now, filename = '{path}', file "
                              "descriptor = 3, errno = 28, error message = 'No space left on device')")
    assert f"(writing {path})" in _stopped(lambda argv: _raise(h5py_close), [], capsys, 2)
    assert f"(writing {path})" in _stopped(fails(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))), [], capsys, 2)
    assert _stopped(fails(RuntimeError("something else")), [], capsys, 2) == "error: something else"
    assert not path.exists() and not _temporary_files(tmp_path)


def _raise(error: Exception):
    raise error


def test_the_probe_tells_a_full_disk_from_other_write_errors(tmp_path, monkeypatch):
    assert not runs.no_space_left(tmp_path)
    real_write = os.write
    for code, full in ((errno.ENOSPC, True), (errno.EDQUOT, True), (errno.EACCES, False)):
        def refused(fd, data, code=code):
            raise OSError(code, os.strerror(code))

        with monkeypatch.context() as m:
            m.setattr(os, "write", refused)
            said = runs.no_space_left(tmp_path)
        assert os.write is real_write and said is full
    assert not list(tmp_path.iterdir())  # the probe file goes


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_the_rerun_resumes(lam_dataset, tmp_path, monkeypatch,
                                                                                capsys):
    """torch.save falls short at lam's second checkpoint: one line naming the checkpoint, exit status 2, no
    temporary file, latest.json on the first checkpoint (intact), and the same command then resumes from it."""
    import torch

    from rl_laof.commands import lam

    out = tmp_path / "lam"
    argv = ["--method", "lapo", "--dataset", str(lam_dataset), "--steps", "6", "--width", "8", "--batch-size", "8",
            "--threads", "1", "--set", "eval_windows=16", "--set", "mlp_probe_steps=2", "--set", "eval_every=6",
            "--set", "checkpoint_every=2", "--no-progress", "--out", str(out)]
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()
        real_save(obj, buf)
        Path(f).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # as much as fitted
        raise RuntimeError(TORCH_SHORT_WRITE)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(runs, "no_space_left", lambda folder: len(saves) >= 2)
    err = _stopped(lam.main, argv, capsys, 2)
    ckpts = out / "checkpoints"
    assert "error: no space left on" in err and f"(writing {ckpts / 'step-00000004.pt'})" in err
    assert f"`python -m rl_laof.lam {' '.join(argv)}`" in err
    assert not _temporary_files(out) and not (ckpts / "step-00000004.pt").exists()
    assert runs.read_json(ckpts / "latest.json") == {"file": "step-00000002.pt", "step": 2}
    assert runs.load_torch(ckpts / "step-00000002.pt")["step"] == 2  # whole, checksum and all
    monkeypatch.undo()
    report = lam.main(argv)
    assert "lam lapo: resuming from step 2 of 6" in capsys.readouterr().err
    assert report["steps"] == 6 and (out / "model.pt").exists()


def _episode(length: int, seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {"obs": rng.integers(0, 255, (length + 1, 3, 16, 16), dtype=np.uint8),
            "actions": rng.standard_normal((length, 6)).astype(np.float32),
            "rewards": rng.standard_normal(length).astype(np.float32)}


def test_a_full_disk_while_writing_a_part_leaves_no_part(tmp_path, monkeypatch, capsys):
    """A dataset part is written from memory in one plain write (HDF5 on a full disk crashed the process): ENOSPC
    there is one line naming the part, and neither the part nor its temporary file is left."""
    from rl_laof.data import format as fmt

    part = tmp_path / "parts" / "train-00000.h5"

    def short(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 3])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", short)
    err = _stopped(lambda argv: fmt.write_part(part, _episode(20, 0), {"length": 20}, "lzf"), [], capsys, 2)
    assert err.startswith("error: no space left on") and f"(writing {part})" in err
    assert not part.exists() and not _temporary_files(tmp_path)
    monkeypatch.undo()
    fmt.write_part(part, _episode(20, 0), {"length": 20, "index": 0, "split": "train"}, "lzf")
    assert fmt.part_is_complete(part, fmt.REQUIRED)


def test_the_merge_is_refused_before_it_starts_where_the_disk_cannot_hold_it(tmp_path, monkeypatch, capsys):
    from rl_laof.data import collection
    from rl_laof.data import format as fmt
    from rl_laof.data.config import CollectConfig

    parts = [tmp_path / "parts" / f"train-{i:05d}.h5" for i in range(2)]
    for i, part in enumerate(parts):
        fmt.write_part(part, _episode(20, i), {"length": 20, "index": i, "split": "train", "return": 0.0, "seed": i},
                       "lzf")
    size = sum(p.stat().st_size for p in parts)
    free = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(runs.shutil, "disk_usage", lambda folder: free._replace(free=size // 2))
    cfg = CollectConfig(expert="random", episodes=2, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                        exact_flow_inputs=False)
    err = _stopped(lambda argv: collection.merge(cfg, tmp_path, "random", parts), [], capsys, 2)
    assert f"error: no space left on the disk of {tmp_path} for the merged dataset.h5 (about" in err
    assert not (tmp_path / "dataset.h5").exists() and not _temporary_files(tmp_path)
    monkeypatch.undo()
    collection.merge(cfg, tmp_path, "random", parts)  # room again: the same parts merge
    from rl_laof.data.dataset import VideoDataset

    assert VideoDataset(tmp_path / "dataset.h5").summary(brief=True)["train"]["episodes"] == 2


# --------------------------------------------------------------------------- subprocesses

def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _start(args: list[str]) -> subprocess.Popen:
    # SIGINT back to its default in the child: a shell's background job (nohup ... &) ignores it, and an ignored
    # signal stays ignored across exec, so the command would never see the Ctrl-C
    return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _ctrl_c(proc: subprocess.Popen, ready=lambda: True, timeout: float = 240) -> tuple[int, str]:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) once ``ready()``; (exit status, stderr)."""
    deadline = time.time() + timeout
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be stopped"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err.strip()


@pytest.mark.slow
def test_ctrl_c_while_starting_and_mid_training_then_the_rerun_resumes(lam_dataset, tmp_path):
    out = tmp_path / "lam"
    args = ["rl_laof.lam", "--method", "lapo", "--dataset", str(lam_dataset), "--steps", "400", "--width", "8",
            "--batch-size", "8", "--threads", "1", "--set", "eval_windows=16", "--set", "mlp_probe_steps=2",
            "--set", "eval_every=400", "--set", "checkpoint_every=5", "--no-progress", "--out", str(out)]
    command = "python -m " + " ".join(args)
    started = time.time()
    code, err = _ctrl_c(_start(args), lambda: time.time() - started > 0.5)  # among the imports (seconds)
    assert code == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("stopped by Ctrl-C") and f"`{command}`" in err

    latest = out / "checkpoints" / "latest.json"
    code, err = _ctrl_c(_start(args), latest.exists)
    assert code == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("stopped by Ctrl-C in lam lapo at step ") and f"(run folder {out})" in err
    assert f"`{command}` resumes" in err
    assert not _temporary_files(out) and not (out / "report.json").exists()
    step = runs.read_json(latest)["step"]
    assert runs.load_torch(out / "checkpoints" / f"step-{step:08d}.pt")["step"] == step

    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "lam lapo: resuming from step " in done.stderr and runs.read_json(out / "report.json")


@pytest.mark.slow
def test_ctrl_c_mid_collection_keeps_whole_parts_and_the_rerun_finishes(tmp_path):
    """Two worker processes: the one line comes from the parent alone (the workers ignore Ctrl-C from their
    start), no dataset.h5 and no temporary part are left, and the rerun collects the rest."""
    out = tmp_path / "ds"
    args = ["rl_laof.collect", "--expert", "random", "--episodes", "4", "--eval-episodes", "1",
            "--heldout-bg-episodes", "1", "--val-episodes", "0", "--episode-steps", "60", "--image-size", "16",
            "--distractors", "hard", "--workers", "2", "--no-progress", "--out", str(out)]
    code, err = _ctrl_c(_start(args), lambda: bool(list((out / "parts").glob("[!.]*.h5"))))
    assert code == 130 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("stopped by Ctrl-C in collect cheetah-run at episode ") and f"(run folder {out})" in err
    assert not (out / "dataset.h5").exists() and not _temporary_files(out)
    kept = len(list((out / "parts").glob("*.h5")))
    assert 1 <= kept < 6
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"resuming from episode {kept} of 6" in done.stderr and (out / "dataset.h5").exists()


# --------------------------------------------------------------------------- a real full disk (root)

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root, and mount, only): yields (folder, grow) where grow(mb) enlarges it."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a real full disk needs root and mount (a 2 MB tmpfs)")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder, lambda mb: subprocess.run(["mount", "-o", f"remount,size={mb}m", str(folder)], check=True)
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_for_collect_and_lam(lam_dataset, small_disk):
    """On a full 2 MB tmpfs: collect (its HDF5 writer segfaulted there) is refused before it starts, its estimated
    size named against the free space (the write-time path is the monkeypatched test above); lam (torch's
    "enforce fail") ends with one line naming the disk, exit status 2, and resumes once the disk has room."""
    disk, grow = small_disk
    collect = ["rl_laof.collect", "--expert", "random", "--episodes", "3", "--eval-episodes", "1",
               "--heldout-bg-episodes", "1", "--val-episodes", "0", "--episode-steps", "200", "--image-size", "64",
               "--distractors", "hard", "--workers", "1", "--no-progress", "--out", str(disk / "ds")]
    lam = ["rl_laof.lam", "--method", "lapo", "--dataset", str(lam_dataset), "--steps", "30", "--width", "8",
                "--batch-size", "8", "--threads", "1", "--set", "eval_windows=16", "--set", "mlp_probe_steps=2",
                "--set", "eval_every=30", "--set", "checkpoint_every=10", "--no-progress", "--out", str(disk / "lam")]
    for args in (collect, lam):
        r = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                           timeout=600)
        err = r.stderr.strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1, err
        if args is collect:
            assert "of disk space at" in err and "more than the 2 MB available" in err, err
        else:
            assert err.startswith(f"error: no space left on {disk}") and "free space and rerun the same command" in err
        assert not _temporary_files(disk)
    assert not list((disk / "ds" / "parts").glob("*.h5"))
    shutil.rmtree(disk / "ds", ignore_errors=True)
    grow(16)
    r = subprocess.run([sys.executable, "-m", *lam], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0 and "lam lapo: resuming from step 10 of 30" in r.stderr, r.stderr

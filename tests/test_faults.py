"""Faults: a refused run leaves its folder usable, the EGL check follows glvnd's rule, MUJOCO_GL other than egl
is refused in one line, corrupt and unfinished files are named with the command that mends them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import refused

from rl_laof import cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("gl")


def test_a_refused_run_leaves_its_folder_usable(lam_dataset, tmp_path, capsys):
    """The config is checked before anything is written: after a refused lam / collect in a folder, the
    corrected command runs there (it is not refused as "another config")."""
    from rl_laof.commands import collect, lam

    out = tmp_path / "lam"
    assert "lr wants none or a number" in refused(lam.main, ["--dataset", str(lam_dataset), "--set", "lr=abc",
                                                           "--out", str(out)], capsys)
    assert not out.exists()
    tiny = ["--dataset", str(lam_dataset), "--steps", "2", "--width", "8", "--batch-size", "8", "--set",
            "eval_windows=16", "--set", "mlp_probe_steps=2", "--set", "eval_every=2", "--no-progress",
            "--out", str(out)]
    assert lam.main(tiny)["steps"] == 2

    data = tmp_path / "data"
    assert "image_size" in refused(collect.main, ["--expert", "random", "--image-size", "0", "--out", str(data)],
                                    capsys)
    assert not data.exists()
    path = collect.main(["--expert", "random", "--episodes", "1", "--eval-episodes", "0", "--heldout-bg-episodes",
                         "0", "--val-episodes", "0", "--episode-steps", "4", "--image-size", "32", "--workers", "1",
                         "--no-progress", "--out", str(data)])
    assert path.exists()
    assert json.loads((data / "collect.json").read_text())["command"].startswith("python -m rl_laof.collect ")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_egl_check_follows_glvnds_rule_and_refuses_other_gl_backends(tmp_path):
    """glvnd reads only ``__EGL_VENDOR_LIBRARY_DIRS`` when it is set: a folder without vendor files there is
    refused in the parent, in one line, before any folder or worker exists; the real folder passes. A
    MUJOCO_GL other than egl is refused the same way."""
    empty = tmp_path / "no_vendors"
    empty.mkdir()
    out = tmp_path / "data"
    r = _run(["-m", "rl_laof.collect", "--expert", "random", "--episodes", "1", "--workers", "2", "--out", str(out)],
             {"__EGL_VENDOR_LIBRARY_DIRS": str(empty)}, tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "__EGL_VENDOR_LIBRARY_DIRS" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()
    vendors = [d for d in ("/usr/share/glvnd/egl_vendor.d", "/etc/glvnd/egl_vendor.d") if list(Path(d).glob("*.json"))]
    r = _run(["-c", "import envs; envs.ensure_gl(); print('ok')"], {"__EGL_VENDOR_LIBRARY_DIRS": vendors[0]}, tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    broken = tmp_path / "broken_egl"  # a libEGL.so.1 that is not a library, found first
    broken.mkdir()
    (broken / "libEGL.so.1").write_bytes(b"not an ELF file")
    r = _run(["-m", "rl_laof.commands.demo", "--out", str(tmp_path / "demo-broken")],
             {"LD_LIBRARY_PATH": f"{broken}:{os.environ.get('LD_LIBRARY_PATH', '')}"}, tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "libEGL.so.1" in r.stderr and not (tmp_path / "demo-broken").exists()
    for backend in ("osmesa", "disable", "none"):
        demo = tmp_path / f"demo-{backend}"
        r = _run(["-m", "rl_laof.commands.demo", "--out", str(demo)], {"MUJOCO_GL": backend}, tmp_path)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"MUJOCO_GL={backend}" in r.stderr and not demo.exists()


def test_a_corrupt_root_attribute_names_the_file_and_the_fix(lam_dataset, tmp_path):
    """16 bytes flipped inside the dataset's root ``config`` attribute: the error names the file, the attribute
    and the command that mends it, not a bare JSON message."""
    import h5py

    from rl_laof.data.dataset import VideoDataset
    from rl_laof.data.format import DatasetError

    bad = tmp_path / "ds"
    bad.mkdir()
    shutil.copy(lam_dataset / "dataset.h5", bad / "dataset.h5")
    with h5py.File(bad / "dataset.h5", "r") as f:
        text = f.attrs["config"]
    data = bytearray((bad / "dataset.h5").read_bytes())
    at = data.find(text[:48].encode())
    assert at > 0
    data[at + 8:at + 24] = bytes(b ^ 0xFF for b in data[at + 8:at + 24])
    (bad / "dataset.h5").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"ds/dataset\.h5: (root attribute 'config'|its root attributes).* corrupt"
                                           r".*rl_laof\.collect"):
        VideoDataset(bad)


def test_damaged_and_unfinished_files_say_the_command_that_mends_them(lam_dataset, tmp_path, capsys):
    from rl_laof.commands import inspect
    from rl_laof.data.format import DatasetError, open_h5

    flow = tmp_path / "ds" / "flow-exact.h5"
    flow.parent.mkdir()
    flow.write_bytes((lam_dataset / "flow-exact.h5").read_bytes()[:1000])
    with pytest.raises(DatasetError, match=rf"truncated or corrupt .* python -m rl_laof\.flow --dataset "
                                           rf"{flow.parent} --method exact"):
        open_h5(flow)
    # a collection killed before its merge: inspect prints the command that resumes it, flags and all
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    command = f"python -m rl_laof.collect --episodes 3 --image-size 32 --out {unfinished}"
    (unfinished / "collect.json").write_text(json.dumps({"config": {}, "expert": "random", "command": command}))
    err = refused(inspect.main, [str(unfinished)], capsys)
    assert f"resume it with `{command}`" in err


def test_evaluate_on_an_unfinished_run_points_to_what_works(tmp_path, capsys):
    from rl_laof.commands import evaluate

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "best_model.zip").write_bytes(b"")
    err = refused(evaluate.main, [str(run)], capsys)
    assert "--which best" in err and "--resume" in err


def test_a_bar_writes_whole_lines_to_a_log_and_says_it_resumes(monkeypatch):
    import io

    from rl_laof import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    log = io.StringIO()
    bar = progress.progress_bar(total=10, initial=4, desc="lam laof", unit="step", stream=log)
    for _ in range(6):
        bar.update(1)
        bar.set_postfix(loss=0.5)
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and text.splitlines()[0] == "lam laof: resuming from step 4 of 10"
    assert "10/10" in text.splitlines()[-1]
    quiet = io.StringIO()  # no bar: the resume is still said, in one line
    progress.progress_bar(total=10, initial=4, desc="x", unit="step", enabled=False, stream=quiet).close()
    assert quiet.getvalue() == "x: resuming from step 4 of 10\n"


def test_a_damaged_run_json_is_refused_with_its_file_named(tmp_path, capsys):
    """A config.json / report.json cut short (a full disk, a kill) ends in one line naming the file and what to
    do, not in the parser's bare position."""
    from rl_laof.runs import read_json

    path = tmp_path / "run" / "report.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"config": {"steps": 10}, "history": [1, 2, 3]})[:25])
    err = refused(lambda argv: read_json(path), [], capsys)
    assert str(path) in err and "not valid JSON" in err and "remove its run folder" in err


def test_a_cut_short_model_file_is_refused_with_its_file_named(tmp_path, capsys):
    """A truncated policy.pt / model.pt / checkpoint gives one line naming the file, not torch's zip-reader
    message (every model and checkpoint load goes through rl_laof.runs.load_torch)."""
    import torch

    from rl_laof.runs import load_torch

    path = tmp_path / "policy.pt"
    torch.save({"weights": torch.arange(1000.0)}, path)
    assert torch.equal(load_torch(path)["weights"], torch.arange(1000.0))
    path.write_bytes(path.read_bytes()[:700])
    err = refused(lambda argv: load_torch(path), [], capsys)
    assert str(path) in err and "cut short or damaged" in err
    assert not [p for p in (ROOT / "rl_laof").rglob("*.py") if "torch.load(" in p.read_text()
                and p.name != "runs.py"]  # no other way in


def test_advice_for_a_wrong_dataset_path_does_not_mislead(tmp_path, capsys):
    """A JSON file passed as the dataset is not called corrupt (nor is its deletion advised); a symbolic-link loop
    is named as one, not answered with "make one with collect --out <the loop>"."""
    from rl_laof.data.format import open_h5

    record = tmp_path / "collect.json"
    record.write_text(json.dumps({"config": {}}))
    err = refused(lambda argv: open_h5(record), [], capsys)
    assert "a file, not a dataset" in err and "delete" not in err and "corrupt" not in err
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    err = refused(lambda argv: open_h5(tmp_path / "a" / "dataset.h5"), [], capsys)
    assert "symbolic link that leads nowhere" in err and "collect --out" not in err


def test_ctrl_c_ends_in_one_line_with_the_command_that_resumes(capsys):
    def main(argv):
        raise KeyboardInterrupt

    main.__module__ = "rl_laof.lam"
    with pytest.raises(SystemExit) as exit_:
        cli.run(main, ["--method", "laof", "--out", "runs/my run"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 130 and len(err.splitlines()) == 1, err
    assert "python -m rl_laof.lam --method laof --out 'runs/my run'" in err and "resumes" in err

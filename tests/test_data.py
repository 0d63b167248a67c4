"""Datasets: windows, label splits, collection (resume, atomicity), integrity checks, inspect."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rl_laof.data import DatasetError, VideoDataset, WindowDataset, labelled_and_unlabelled, make_label_splits
from rl_laof.data import format as fmt
from rl_laof.data.config import CollectConfig, WindowConfig

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a synthetic dataset

def write_synthetic(path: Path, lengths: list[int], size: int = 8, action_dim: int = 2, seed: int = 0,
                    task: str = "cheetah-run", val: list[int] = ()) -> Path:
    """A dataset whose frames say where they come from: channel 0 = episode, 1 = frame % 256, 2 = frame // 256.
    Train episodes of ``lengths`` and val episodes of ``val``; without val it has the layout of the files written
    before the val split existed (no ``episodes/val`` group)."""
    with h5py.File(path, "w") as f:
        f.attrs.update(format=fmt.FORMAT, version=fmt.VERSION, task=task, seed=seed, complete=True,
                       config="{}", versions="{}", expert="{}")
        for split, e, T in [*(("train", e, T) for e, T in enumerate(lengths)),
                            *(("val", e, T) for e, T in enumerate(val))]:
            j = np.arange(T + 1)
            obs = np.zeros((T + 1, 3, size, size), np.uint8)
            obs[:, 0] = e
            obs[:, 1] = (j % 256)[:, None, None]
            obs[:, 2] = (j // 256)[:, None, None]
            states = np.stack([np.full(T + 1, e), j], 1).astype(np.float32)
            arrays = dict(obs=obs, actions=np.stack([np.full(T, e), np.arange(T)], 1).astype(np.float32),
                          rewards=np.ones(T, np.float32), states=states,
                          agent_mask=np.zeros((T + 1, size, size), bool))
            fmt.write_episode(f.create_group(f"episodes/{split}/{fmt.episode_name(e)}"), arrays,
                              {"index": e, "seed": e, "length": T, "return": float(T)}, "lzf")
        masks, meta = make_label_splits(lengths, (0.0, 0.1, 0.5), (1, 2), seed)
        for name, mask in masks.items():
            f.create_dataset(f"labels/{name}", data=mask)
        f["labels"].attrs["meta"] = json.dumps(meta)
    return path


def decode(frames) -> tuple[np.ndarray, np.ndarray]:
    """(B, 3s, H, W) -> (episode, frame index) of every stacked frame, (B, s) each."""
    f = frames.numpy()[:, :, 0, 0].reshape(len(frames), -1, 3).astype(int)
    return f[..., 0], f[..., 1] + 256 * f[..., 2]


@pytest.mark.parametrize("stack,max_offset", [(1, 1), (3, 1), (3, 10), (4, 300)])
def test_windows_never_cross_episodes(tmp_path, stack, max_offset):
    lengths = [5, 1, 40, 300, 7]
    ds = VideoDataset(write_synthetic(tmp_path / "d.h5", lengths))
    w = WindowDataset(ds, "train", WindowConfig(frame_stack=stack, max_offset=max_offset, label_split="all",
                                                with_states=True))
    assert len(w) == sum(lengths)
    b = w.__getitems__(np.arange(len(w)))
    ep, t, k = b["episode"].numpy(), b["t"].numpy(), b["k"].numpy()
    T = np.asarray(lengths)[ep]
    assert ((t >= 0) & (t < T)).all()
    assert ((k >= 1) & (k <= np.minimum(max_offset, T - t))).all()
    expect = np.arange(1 - stack, 1)
    for key, end in (("obs", t), ("next_obs", t + 1), ("future_obs", t + k)):
        if key not in b:
            assert max_offset == 1
            continue
        e, j = decode(b[key])
        assert (e == ep[:, None]).all(), f"{key}: a frame from another episode"
        np.testing.assert_array_equal(j, np.maximum(end[:, None] + expect, 0))  # first frame repeats at the start
    np.testing.assert_array_equal(b["state"].numpy(), np.stack([ep, t], 1))
    np.testing.assert_array_equal(b["next_state"].numpy(), np.stack([ep, t + 1], 1))
    np.testing.assert_array_equal(b["action"].numpy(), np.stack([ep, t], 1))  # a_t belongs to (o_t, o_{t+1})
    if max_offset > 1:  # offsets really vary, up to the cap where there is room
        assert k.min() == 1 and k.max() > min(max_offset, max(lengths)) // 2


def test_labelled_and_unlabelled_views_hide_actions(tmp_path):
    ds = VideoDataset(write_synthetic(tmp_path / "d.h5", [50, 50, 100]))
    lab, unl = labelled_and_unlabelled(ds, WindowConfig(label_split="frac-0.1"))
    assert len(lab) == 20 and len(unl) == 180
    bl, bu = lab.__getitems__(np.arange(len(lab))), unl.__getitems__(np.arange(len(unl)))
    assert bl["labelled"].all() and not bu["labelled"].any()
    assert (bu["action"] == 0).all()  # unlabelled windows carry no action
    np.testing.assert_array_equal(bl["action"][:, 1].numpy(), bl["t"].numpy())
    batches = lab.batches(8, seed=0)
    epoch = [next(batches) for _ in range(2)]  # 20 labelled windows: two full batches per epoch
    keys = [(int(e), int(t)) for b in epoch for e, t in zip(b["episode"], b["t"], strict=True)]
    assert len(set(keys)) == 16  # no repeats within an epoch
    loader = unl.loader(32)
    sizes = [len(x["obs"]) for x in loader]
    assert sizes == [32] * (180 // 32)
    with pytest.raises(KeyError, match="no label split 'frac-0.02'"):
        WindowDataset(ds, "train", WindowConfig(label_split="frac-0.02"))


def test_label_splits_exact_nested_reproducible():
    lengths = [1000] * 20 + [500] * 10 + [37]
    n = sum(lengths)
    m1, meta = make_label_splits(lengths, (0.0, 0.01, 0.05, 0.1), (2, 8, 32, 128), seed=3)
    m2, _ = make_label_splits(lengths, (0.0, 0.01, 0.05, 0.1), (2, 8, 32, 128), seed=3)
    m3, _ = make_label_splits(lengths, (0.0, 0.01, 0.05, 0.1), (2, 8, 32, 128), seed=4)
    for f in (0.0, 0.01, 0.05, 0.1):
        name = f"frac-{f:g}"
        assert m1[name].sum() == round(f * n) and len(m1[name]) == n
        np.testing.assert_array_equal(m1[name], m2[name])
        if f > 0:
            assert not np.array_equal(m1[name], m3[name])
    assert (m1["frac-0.01"] <= m1["frac-0.05"]).all() and (m1["frac-0.05"] <= m1["frac-0.1"]).all()  # nested
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for k in (2, 8):
        eps = meta[f"traj-{k}"]["episodes"]
        assert len(eps) == k
        per_ep = [m1[f"traj-{k}"][starts[e]:starts[e + 1]] for e in range(len(lengths))]
        assert all(p.all() if e in eps else not p.any() for e, p in enumerate(per_ep))  # whole episodes only
    assert set(meta["traj-2"]["episodes"]) <= set(meta["traj-8"]["episodes"])
    assert "traj-32" not in m1 and meta["skipped"]["trajectories"] == [32, 128]  # only 31 episodes


def test_a_file_without_a_val_split_opens_and_merges(tmp_path):
    """Files written before the val split have no ``episodes/val`` group: they open with an empty val split,
    and multi-task merging takes a split from every source or from none."""
    from rl_laof.data.multitask import merge_datasets

    old = VideoDataset(write_synthetic(tmp_path / "old.h5", [5, 3]))
    assert list(old.episodes) == list(fmt.SPLITS) and old.episodes["val"] == []
    assert old.summary()["val"] == dict(episodes=0, transitions=0, frames=0, return_mean=None, return_std=None)
    with pytest.raises(DatasetError, match="split 'val' has no episodes.*--val-episodes"):
        old.load_split("val")
    new = VideoDataset(write_synthetic(tmp_path / "new.h5", [5, 3], val=[4, 2]))
    val = new.load_split("val", keys=("obs", "actions"))
    assert val.lengths.tolist() == [4, 2] and val["actions"].shape == (6, 2)
    assert new.label_mask("val", "frac-0").all()  # held-out splits keep all their actions
    assert new.summary()["train"]["transitions"] == 8 and len(new.labels["frac-0.5"]) == 8  # labels: train only

    stand = write_synthetic(tmp_path / "stand.h5", [3], task="walker-stand")
    walk = write_synthetic(tmp_path / "walk.h5", [4], task="walker-walk")
    walk_val = write_synthetic(tmp_path / "walk_val.h5", [4], task="walker-walk", val=[2])
    stand_val = write_synthetic(tmp_path / "stand_val.h5", [3], task="walker-stand", val=[5])
    merged = VideoDataset(merge_datasets([stand, walk], tmp_path / "m_old", progress=False) / "dataset.h5")
    assert merged.episodes["val"] == [] and len(merged.episodes["train"]) == 2
    with pytest.raises(ValueError, match=r"split 'val': .*stand\.h5 have no val episodes"):
        merge_datasets([stand, walk_val], tmp_path / "m_mixed", progress=False)
    both = VideoDataset(merge_datasets([stand_val, walk_val], tmp_path / "m_val", progress=False) / "dataset.h5")
    assert [(e.length, e.task_id) for e in both.episodes["val"]] == [(5, 0), (2, 1)]


# --------------------------------------------------------------------------- real collection

def collect_cmd(out: Path, workers: int, episodes: int = 3, steps: int = 25) -> list[str]:
    return [sys.executable, "-m", "rl_laof.collect", "--expert", "random", "--episodes", str(episodes),
            "--eval-episodes", "1", "--heldout-bg-episodes", "1", "--val-episodes", "1", "--episode-steps", str(steps),
            "--image-size", "32",
            "--distractors", "hard", "--workers", str(workers), "--no-progress", "--out", str(out)]


def read_all(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
        f.visititems(visit)
        out["attrs"] = {k: f.attrs[k] for k in ("task", "seed", "config")}
    return out


@pytest.fixture(scope="module")
def collected(tmp_path_factory, request):
    request.getfixturevalue("gl")
    out = tmp_path_factory.mktemp("collect") / "uninterrupted"
    subprocess.run(collect_cmd(out, workers=1), check=True, cwd=ROOT, capture_output=True, timeout=300)
    return out


def test_collected_dataset_contents(collected):
    ds = VideoDataset(collected, verify="full")
    s = ds.summary()
    assert [s[k]["episodes"] for k in ("train", "eval", "heldout_bg", "val")] == [3, 1, 1, 1]
    assert s["train"]["transitions"] == 75 and s["train"]["frames"] == 78
    ep = ds.episode("train", 1)
    assert ep["obs"].shape == (26, 3, 32, 32) and ep["obs"].dtype == np.uint8
    assert ep["actions"].shape == (25, 6) and ep["rewards"].shape == (25,)
    assert ep["depth"].shape == (26, 32, 32) and ep["geom_xpos"].shape[0] == 26
    assert ep["agent_mask"].any(1).any(1).all()  # the agent is in every frame
    assert ds.agent_geoms is not None and ds.agent_geoms.any()
    cfg = ds.config
    assert cfg["distractors"]["difficulty"] == "hard" and ds.attrs["versions"]["mujoco"] == "3.17.0"
    # labels stored in the file are exactly the ones the seed gives
    masks, _ = make_label_splits([25, 25, 25], tuple(cfg["label_fractions"]), tuple(cfg["label_trajectories"]),
                                 cfg["seed"])
    assert set(masks) == set(ds.labels)
    for name in masks:
        np.testing.assert_array_equal(ds.labels[name], masks[name])
    # splits use disjoint seeds; held-out backgrounds differ from the train ones
    seeds = [e.seed for eps in ds.episodes.values() for e in eps]
    assert len(set(seeds)) == len(seeds)
    assert ds.attrs["expert"]["kind"] == "random"


@pytest.mark.slow
def test_killed_collection_resumes_to_the_same_dataset(collected, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(collect_cmd(out, workers=2), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if list((out / "parts").glob("[!.]*.h5")):  # a finished part (not a temporary file)
            break
        time.sleep(0.05)
    assert proc.poll() is None, "collection finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "dataset.h5").exists()  # an interrupted run leaves no dataset behind
    done_before = len(list((out / "parts").glob("[!.]*.h5")))
    assert 1 <= done_before < 6
    subprocess.run(collect_cmd(out, workers=2), check=True, cwd=ROOT, capture_output=True, timeout=300)
    a, b = read_all(collected / "dataset.h5"), read_all(out / "dataset.h5")
    assert set(a) == set(b)
    for key in a:
        if key != "attrs":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not (out / "parts").exists()


def test_corrupt_and_truncated_files_are_named(collected, tmp_path):
    bad = tmp_path / "corrupt.h5"
    shutil.copy(collected / "dataset.h5", bad)
    with h5py.File(bad, "r") as f:
        info = f["episodes/train/00001/obs"].id.get_chunk_info(0)
    with open(bad, "r+b") as fh:  # flip bytes inside the first chunk of episode 1's frames
        fh.seek(info.byte_offset + info.size // 2)
        chunk = bytearray(fh.read(16))
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(bytes(x ^ 0xFF for x in chunk))
    VideoDataset(bad)  # the structure is intact...
    with pytest.raises(DatasetError, match=r"corrupt\.h5: episode train/00001.*'obs'.*corrupt"):
        VideoDataset(bad, verify="full")  # ...the checksum is not
    with pytest.raises(DatasetError, match=r"episode train/00001"):
        WindowDataset(VideoDataset(bad), "train")

    cut = tmp_path / "truncated.h5"
    data = (collected / "dataset.h5").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"truncated\.h5.*truncated or corrupt"):
        VideoDataset(cut)
    with pytest.raises(DatasetError, match="no such dataset"):
        VideoDataset(tmp_path / "missing.h5")


def test_inspect_writes_summary_and_contact_sheet(collected, tmp_path):
    png = tmp_path / "sheet.png"
    r = subprocess.run([sys.executable, "-m", "rl_laof.commands.inspect", str(collected), "--out", str(png),
                        "--samples", "3"], check=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    summary = json.loads(r.stdout)
    assert summary["train"]["frames"] == 78 and summary["labels"]["traj-2"] == 50
    from PIL import Image

    assert Image.open(png).size[0] > 200


def test_collect_refuses_a_different_config_in_the_same_folder(collected):
    from rl_laof.data.collection import collect

    cfg = CollectConfig(expert="random", episodes=2, eval_episodes=1, heldout_bg_episodes=1, episode_steps=25,
                        image_size=32, workers=1)
    with pytest.raises(ValueError, match="another config"):
        collect(cfg, collected, progress=False)


def test_collect_without_flow_inputs_and_bad_input(gl, tmp_path):
    from rl_laof.data.collection import collect

    cfg = CollectConfig(expert="random", episodes=1, eval_episodes=0, heldout_bg_episodes=0, val_episodes=0,
                        episode_steps=6, image_size=32, workers=1, exact_flow_inputs=False, distractors="easy")
    ds = VideoDataset(collect(cfg, tmp_path / "small", progress=False))
    assert "depth" not in ds.keys and "agent_mask" in ds.keys and "physics_states" in ds.keys
    assert ds.summary()["train"]["frames"] == 7
    with pytest.raises(ValueError, match="Did you mean 'cheetah-run'"):
        collect(CollectConfig(task="cheetah-rn", expert="random"), tmp_path / "bad", progress=False)
    with pytest.raises(FileNotFoundError, match="not an expert run directory"):
        collect(CollectConfig(expert=str(tmp_path)), tmp_path / "bad2", progress=False)


# the seed codes of the splits before val existed: their episodes must never change
OLD_SPLIT_CODES = {"train": 0, "eval": 1, "heldout_bg": 2}


def test_val_episodes_have_their_own_seeds_and_leave_the_older_splits_unchanged(collected):
    from rl_laof.data.collection import episode_seed

    ds = VideoDataset(collected)
    seed = ds.attrs["seed"]
    for split, code in OLD_SPLIT_CODES.items():
        for e in ds.episodes[split]:
            want = int(np.random.SeedSequence([seed, code, e.index]).generate_state(1)[0] % (2**31 - 1))
            assert e.seed == want == episode_seed(seed, split, e.index), (split, e.index)
    val = [e.seed for e in ds.episodes["val"]]
    others = {e.seed for split in OLD_SPLIT_CODES for e in ds.episodes[split]}
    assert len(val) == 1 and not set(val) & others
    cfg = CollectConfig(expert="random")
    assert cfg.env_config("val", 0).distractors.background_split == "train"  # val: train's distribution
    assert cfg.env_config("heldout_bg", 0).distractors.background_split == "eval"
    assert fmt.SPLITS[:3] == tuple(OLD_SPLIT_CODES) and fmt.SPLITS[3] == "val"


def test_adding_val_episodes_keeps_the_other_episodes_bit_identical(gl, tmp_path):
    from rl_laof.data.collection import collect

    base = dict(expert="random", episodes=1, eval_episodes=1, heldout_bg_episodes=1, episode_steps=5, image_size=32,
                workers=1, exact_flow_inputs=False, distractors="hard")
    without = collect(CollectConfig(**base, val_episodes=0), tmp_path / "without", progress=False)
    with_val = collect(CollectConfig(**base, val_episodes=2), tmp_path / "with", progress=False)
    a, b = read_all(without), read_all(with_val)
    assert not any(k.startswith("episodes/val") for k in a)
    assert {k for k in b if k.startswith("episodes/val/")} >= {"episodes/val/00000/obs", "episodes/val/00001/obs"}
    for key in a:  # every train / eval / heldout_bg array and every label split
        if key != "attrs":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not np.array_equal(b["episodes/val/00000/obs"], b["episodes/eval/00000/obs"])
    assert VideoDataset(with_val).summary()["val"]["frames"] == 12

    # a folder collected before val existed (its config has no val_episodes): it is the val_episodes=0 dataset
    record = json.loads((tmp_path / "without" / "collect.json").read_text())
    del record["config"]["val_episodes"]
    (tmp_path / "without" / "collect.json").write_text(json.dumps(record))
    assert collect(CollectConfig(**base, val_episodes=0), tmp_path / "without", progress=False) == without
    with pytest.raises(ValueError, match="before the val split existed.*--val-episodes 0"):
        collect(CollectConfig(**base, val_episodes=2), tmp_path / "without", progress=False)

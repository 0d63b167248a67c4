"""Why does held-out action error not rank imitation returns? Each agent's action error against the
deterministic expert on the data's states (off-policy) and on the states it visits itself (on-policy).

    python benchmarks/study_closed_loop.py [--dataset DIR] [--runs RUN,RUN,...] [--kicks 0,10] [--episodes 8]

For every imitation run (``policy.pt``; default: ``bench_imitation``'s seed-0 runs of bc_all, lapo_bc, laof_bc
and laof_lafp) and every ``kick`` K, the agent is rolled out for ``--episodes`` episodes on the dm_control
backend with the dataset's distractors and backgrounds (the backend that reports the proprioceptive state),
the first K steps taken by the expert (does the agent stall at the start?). At every visited state the
expert's deterministic action is the reference. Errors are MSE over the variance of the expert's actions on
the data's held-out states, so on- and off-policy errors share one scale. Also reported: the correlation of
agent and expert actions (mean over action dims), the std of both on the visited states (a stalled agent
visits states where the expert's action hardly varies), the mean forward speed and the fraction of steps
upside down (cheetah-run's state: position = rootz, rooty, joints...; velocity[0] = forward speed; only
cheetah-run is supported). Writes ``benchmarks/results/study_closed_loop.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_args import alone

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from envs.rollout import EVAL_SEED
from rl_laof.runs import write_json

RESULTS = Path(__file__).resolve().parent / "results" / "study_closed_loop.json"
BENCH = "runs/bench/imitation/full/laom"
DEFAULT_RUNS = ",".join(f"{BENCH}/{m}-s0" for m in ("bc_all", "lapo_bc", "laof_bc", "laof_lafp"))
ROOTY, SPEED = 1, 8  # cheetah-run's flat state: position (8, no rootx) then velocity (9)


def corr(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.nanmean([np.corrcoef(pred[:, j], ref[:, j])[0, 1] for j in range(ref.shape[1])]))


def off_policy(agent, expert, windows) -> tuple[np.ndarray, np.ndarray]:
    """(agent actions, expert actions) on the held-out data's frame stacks and states."""
    rows = np.arange(windows.data.num_transitions)
    pred, ref = [], []
    for i in range(0, len(rows), 256):
        b = windows.gather(rows[i:i + 256])
        pred.append(agent(b["obs"].numpy()))
        ref.append(expert.act(b["state"].numpy(), deterministic=True))
    return np.concatenate(pred), np.concatenate(ref)


def on_policy(agent, expert, settings: dict, frame_stack: int, episodes: int, kick: int) -> dict:
    """Roll the agent out (the expert for the first ``kick`` steps); the expert labels every visited state."""
    venv = envs.make(settings["task"], num_envs=episodes, obs="pixels", distractors=settings["distractors"],
                     image_size=settings["image_size"], frame_stack=frame_stack,
                     action_repeat=settings["action_repeat"],
                     seed=EVAL_SEED, backend="dm_control", exact_flow_info=True, monitor=False)
    try:
        obs = venv.reset()
        states = np.stack([i["state"] for i in venv.reset_infos])
        live, ret = np.ones(episodes, bool), np.zeros(episodes)
        pred, ref, visited = [], [], []
        step = 0
        while live.any():
            expert_a = expert.act(states, deterministic=True)
            a = agent(obs) if step >= kick else expert_a
            pred.append(a[live])
            ref.append(expert_a[live])
            visited.append(states[live])
            obs, rew, dones, infos = venv.step(a)
            ret += rew * live
            live &= ~dones
            states = np.stack([i.get("state", states[j]) for j, i in enumerate(infos)])
            step += 1
    finally:
        venv.close()
    return {"pred": np.concatenate(pred), "ref": np.concatenate(ref), "states": np.concatenate(visited),
            "returns": ret}


def parse_kicks(text: str) -> list[int]:
    try:
        kicks = [int(k) for k in text.split(",")]
    except ValueError:
        raise SystemExit(f"--kicks {text!r}: comma-separated step counts, e.g. 0,10") from None
    if any(k < 0 for k in kicks):
        raise SystemExit(f"--kicks {text!r}: step counts are >= 0")
    return kicks


def check_inputs(dataset: Path, runs: list[str], episodes: int) -> Path:
    """The dataset file; every problem with the arguments as one line that says how to fix it."""
    h5 = dataset / "dataset.h5" if dataset.is_dir() else dataset
    if not h5.exists():
        raise SystemExit(f"--dataset {dataset}: no dataset there (python -m rl_laof.collect --task cheetah-run "
                         "--preset quick --distractors laom makes the default)")
    missing = [r for r in runs if not (Path(r) / "policy.pt").exists()]
    if missing:
        raise SystemExit(f"--runs: no policy.pt in {', '.join(missing)} (imitation run folders: python "
                         "benchmarks/bench_imitation.py makes the defaults, python -m rl_laof.imitation any other)")
    if episodes < 1:
        raise SystemExit(f"--episodes {episodes}: at least 1")
    return h5


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="runs/datasets/cheetah-run/laom-ar4-quick-s0")
    p.add_argument("--runs", default=DEFAULT_RUNS, help="comma-separated imitation run folders")
    p.add_argument("--kicks", default="0,10", help="comma-separated numbers of first steps taken by the expert")
    p.add_argument("--episodes", type=int, default=8)
    args = p.parse_args()
    from agents.expert import Expert
    from rl_laof.data.config import WindowConfig
    from rl_laof.data.dataset import VideoDataset
    from rl_laof.data.windows import WindowDataset
    from rl_laof.imitation.policy import load_latent_policy

    path, runs, kicks = Path(args.dataset), args.runs.split(","), parse_kicks(args.kicks)
    ds = VideoDataset(check_inputs(path, runs, args.episodes))
    settings = ds.env_settings
    if settings["task"] != "cheetah-run":
        raise SystemExit(f"--dataset: study_closed_loop reads cheetah-run's state layout; got {settings['task']}")
    if ds.attrs.get("expert", {}).get("kind") != "sb3":
        raise SystemExit(f"--dataset {path}: collected without an expert, so there is no reference action")
    expert = Expert.load(ds.attrs["expert"]["run_dir"], "best")

    def windows_of(frame_stack: int) -> WindowDataset:
        return WindowDataset(ds, "eval", WindowConfig(frame_stack=frame_stack, max_offset=1, label_split="all",
                                                      with_masks=False, with_states=True, with_flow=False))

    data_states = np.asarray(windows_of(1).data["states"])
    out = {"dataset": str(path), "episodes": args.episodes, "data_speed": round(float(data_states[:, SPEED].mean()), 2),
           "data_upside_down": round(float((np.abs(data_states[:, ROOTY]) > np.pi / 2).mean()), 3), "rows": []}
    for run in runs:
        agent, meta = load_latent_policy(run)
        if meta["task"] != settings["task"] or meta["image_size"] != settings["image_size"]:
            raise SystemExit(f"--runs {run}: trained on {meta['task']} at {meta['image_size']} px, the dataset is "
                             f"{settings['task']} at {settings['image_size']} px")
        frame_stack = int(meta["config"]["frame_stack"])
        off_pred, off_ref = off_policy(agent, expert, windows_of(frame_stack))
        scale = float(((off_ref - off_ref.mean(0)) ** 2).mean())
        for kick in kicks:
            r = on_policy(agent, expert, settings, frame_stack, args.episodes, kick)
            s = r["states"]
            row = {"run": run, "kick": kick, "return": round(float(r["returns"].mean()), 1),
                   "episode_returns": r["returns"].round(1).tolist(),
                   "off_policy_error": round(float(((off_pred - off_ref) ** 2).mean()) / scale, 3),
                   "on_policy_error": round(float(((r["pred"] - r["ref"]) ** 2).mean()) / scale, 3),
                   "off_policy_corr": round(corr(off_pred, off_ref), 3),
                   "on_policy_corr": round(corr(r["pred"], r["ref"]), 3),
                   "expert_action_std_visited": round(float(r["ref"].std(0).mean()), 3),
                   "agent_action_std_visited": round(float(r["pred"].std(0).mean()), 3),
                   "speed": round(float(s[:, SPEED].mean()), 2),
                   "upside_down": round(float((np.abs(s[:, ROOTY]) > np.pi / 2).mean()), 3)}
            out["rows"].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "episode_returns"}), flush=True)
    write_json(RESULTS, out)
    print(json.dumps({"rows": len(out["rows"]), "results": str(RESULTS)}))
    return out


if __name__ == "__main__":
    alone(main)

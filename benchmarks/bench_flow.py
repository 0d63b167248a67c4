"""Flow quality and speed on real frames, exact flow as ground truth.

    python benchmarks/bench_flow.py [--quick]

Frames: cheetah-run (action repeat 4) and walker-walk (action repeat 2), 64x64, hard distractors,
rendered by the dm_control backend under random actions; ground truth = our exact flow. EPE is the
mean end-point error in pixels over *agent* pixels that are visible in both frames (LAOF's target),
averaged over both tasks. Measured one after the other in one run:

  zero         predict no motion (the baseline every estimate must beat)
  ours         rl_laof.flow.estimate (coarse-to-fine dual TV-L1, Numba, batched over pairs)
  dis          OpenCV DIS, medium preset, finest scale 0 (full resolution on small frames)
  farneback    OpenCV Farneback (pyramid 0.5, 3 levels, window 15)
  tvl1         OpenCV dual TV-L1 (opencv-contrib ``cv2.optflow``), default parameters
  exact_numba  / exact_numpy: our exact-flow kernel against the NumPy reference (pairs per second)
  ours_cupy, exact_cupy: the CUDA kernels of both (only where a CUDA device is usable; timed with the
               host-device copies, after a warm-up call that compiles them), and their ratio to Numba

pps = pairs per second of wall time on this machine (all cores). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from bench_args import alone, write_result

import envs  # noqa: F401  (loads EGL before anything imports envpool)
from rl_laof.data.collection import random_episode
from rl_laof.flow import FlowInputs, exact_flow_numba, exact_flow_numpy
from rl_laof.flow.backends import cuda_problem, estimate_flow_cupy, exact_flow_cupy
from rl_laof.flow.estimate import estimate_flow_numba, to_gray

TASKS = {"cheetah-run": 4, "walker-walk": 2}


def timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def opencv_methods():
    import cv2

    cv2.setNumThreads(os.cpu_count() or 1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()

    def run(method, g0, g1):
        out = np.empty((len(g0), 2, *g0.shape[1:]), np.float32)
        for i in range(len(g0)):
            if method == "dis":
                f = dis.calc(g0[i], g1[i], None)
            elif method == "farneback":
                f = cv2.calcOpticalFlowFarneback(g0[i], g1[i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
            else:
                f = tvl1.calc(g0[i], g1[i], None)
            out[i] = f.transpose(2, 0, 1)
        return out

    return run


def gpu_name() -> str | None:
    if cuda_problem():
        return None
    import cupy

    return cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()


def main() -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer pairs (about a minute)")
    args = p.parse_args()
    pairs = 12 if args.quick else 60
    run_cv = opencv_methods()
    estimate_flow_numba(np.zeros((1, 16, 16), np.float32), np.zeros((1, 16, 16), np.float32))  # compile
    gpu = cuda_problem() is None
    methods = ["zero", "ours", "dis", "farneback", "tvl1"] + (["ours_cupy"] if gpu else [])
    epe: dict[str, list] = {k: [] for k in methods}
    timed_methods = methods[1:] + ["exact_numba", "exact_numpy"] + (["exact_cupy"] if gpu else [])
    secs: dict[str, float] = {k: 0.0 for k in timed_methods}
    n_pairs = 0
    for task, repeat in TASKS.items():
        ep, attrs = random_episode(task, "hard", pairs, repeat)
        x = FlowInputs.from_episode(ep, attrs["camera_fovy"])
        exact_flow_numba(x)  # compile / warm
        (gt, valid), dt = timed(exact_flow_numba, x)
        secs["exact_numba"] += dt
        _, dt = timed(exact_flow_numpy, x)
        secs["exact_numpy"] += dt
        mask = valid & ep["agent_mask"][:-1].astype(bool)
        g = np.clip(to_gray(ep["obs"]) + 0.5, 0, 255).astype(np.uint8)
        g0, g1 = g[:-1], g[1:]
        preds = {"zero": np.zeros_like(gt)}
        preds["ours"], dt = timed(estimate_flow_numba, ep["obs"][:-1], ep["obs"][1:])
        secs["ours"] += dt
        for m in ("dis", "farneback", "tvl1"):
            preds[m], dt = timed(run_cv, m, g0, g1)
            secs[m] += dt
        if gpu:
            estimate_flow_cupy(ep["obs"][:2], ep["obs"][1:3])  # compile / warm
            exact_flow_cupy(x)
            preds["ours_cupy"], dt = timed(estimate_flow_cupy, ep["obs"][:-1], ep["obs"][1:])
            secs["ours_cupy"] += dt
            _, dt = timed(exact_flow_cupy, x)
            secs["exact_cupy"] += dt
        for m, f in preds.items():
            epe[m].append(np.hypot(f[:, 0] - gt[:, 0], f[:, 1] - gt[:, 1])[mask])
        n_pairs += len(gt)
    result: dict = dict(tasks=TASKS, pairs=n_pairs, quick=args.quick, cpu_cores=os.cpu_count(), gpu=gpu_name())
    for m, errs in epe.items():
        result[f"epe_{m}"] = round(float(np.concatenate(errs).mean()), 4)
    for m, s in secs.items():
        result[f"pps_{m}"] = round(n_pairs / s, 1)
    result["ours_vs_tvl1_speed"] = round(result["pps_ours"] / result["pps_tvl1"], 2)
    result["ours_vs_tvl1_epe"] = round(result["epe_ours"] / result["epe_tvl1"], 3)
    result["exact_numba_vs_numpy"] = round(result["pps_exact_numba"] / result["pps_exact_numpy"], 1)
    if gpu:
        result["cupy_vs_numba_estimate"] = round(result["pps_ours_cupy"] / result["pps_ours"], 2)
        result["cupy_vs_numba_exact"] = round(result["pps_exact_cupy"] / result["pps_exact_numba"], 2)
    if not args.quick:
        write_result("flow", result)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    alone(main)

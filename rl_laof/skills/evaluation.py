"""How good a skills run is: held-out token quality (flow reconstruction, codebook use, prior likelihood) and
the skill policy's returns per task, on the env the data came from."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.rollout import policy_returns
from rl_laof.models.skill_models import SkillPrior, SkillTokenizer
from rl_laof.runs import write_json
from rl_laof.skills.data import ChunkData, all_tokens
from rl_laof.skills.policy import SkillPolicy
from rl_laof.skills.training import SkillRun

#: a tokenizer using fewer than this share of its codebook on held-out windows is collapsed (the run that had
#: collapsed used 5 of 1000 codes); so is one that maps every held-out window to one code
COLLAPSE_FLOOR = 0.05


def code_stats(tokens: torch.Tensor, codebook_size: int) -> dict[str, Any]:
    """Codebook use of (N, n) token indices (held-out windows, n tokens each): ``code_usage`` is the share of the
    codebook used at least once with the n token positions pooled (``code_usage_per_position`` per position),
    ``perplexity`` that of the pooled code distribution; ``collapsed`` when one code is used or the usage is
    below :data:`COLLAPSE_FLOOR`. The usage cannot exceed N·n / codebook_size (``code_samples``)."""
    flat = tokens.flatten().long()
    counts = torch.bincount(flat, minlength=codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    used = int((counts > 0).sum())
    usage = used / codebook_size
    return {"code_usage": usage, "code_usage_over": "token positions pooled", "codes_used": used,
            "codebook_size": int(codebook_size), "code_samples": int(flat.numel()),
            "code_usage_per_position": [len(torch.unique(tokens[:, j])) / codebook_size
                                        for j in range(tokens.shape[1])],
            "perplexity": float(torch.exp(-(p * p.log()).sum())),
            "collapsed": bool(used <= 1 or usage < COLLAPSE_FLOOR), "collapse_floor": COLLAPSE_FLOOR}


def recon_errors(recon: torch.Tensor, target: torch.Tensor, mean_window: torch.Tensor) -> dict[str, float]:
    """The tokenizer's flow MSE against two trivial predictors of the same windows: no motion (zero flow,
    ``recon_vs_zero``) and the mean training window (``recon_vs_mean``); below 1 beats the predictor."""
    mse = float(((recon - target) ** 2).mean())
    zero = float((target ** 2).mean())
    mean = float(((mean_window.expand_as(target) - target) ** 2).mean())
    return {"flow_mse": mse, "zero_flow_mse": zero, "mean_window_mse": mean,
            "recon_vs_zero": mse / max(zero, 1e-12), "recon_vs_mean": mse / max(mean, 1e-12)}


@torch.no_grad()
def mean_window(data: ChunkData, batch: int = 1024) -> torch.Tensor:
    """(H, 2, S, S): the mean normalised flow window of ``data`` (the training windows)."""
    total = None
    for s in range(0, len(data), batch):
        part = data.flow_windows(np.arange(s, min(len(data), s + batch))).sum(0)
        total = part if total is None else total + part
    return total / len(data)


def token_report(run: SkillRun, tok: SkillTokenizer, prior: SkillPrior | None) -> dict[str, Any]:
    """Held-out quality on the eval split's windows (never training windows): codebook use (:func:`code_stats`),
    flow error against zero flow and the mean training window (:func:`recon_errors`; L1 too), and the prior's
    NLL against the unigram of the training tokens."""
    ev = ChunkData(run.ds, run.cfg, "eval", flow_scale=tok.flow_scale)
    return token_quality(tok, ev, run.train_data, prior)


def token_quality(tok: SkillTokenizer, ev: ChunkData, train: ChunkData, prior: SkillPrior | None
                  ) -> dict[str, Any]:
    """:func:`token_report` on the windows ``ev`` (held out), with ``train`` for the mean window and unigram."""
    idx = np.random.default_rng(0).permutation(len(ev))[:2048]
    with torch.no_grad():
        target = ev.flow_windows(idx)
        recon, codes = tok(target, ev.first_frame(idx))
        agent = ev.agent_cells(idx)
    cells = agent[:, :, None].expand_as(target)
    tokens = tok.fsq.codes_to_indices(codes)
    out: dict[str, Any] = {"eval_windows": int(len(idx)), "split": "eval",
                           # on the cells that show the agent (in units of flow_scale)
                           "flow_l1_agent": float((recon - target).abs()[cells].mean()),
                           "zero_flow_l1_agent": float(target.abs()[cells].mean()),
                           "flow_l1": float((recon - target).abs().mean()),
                           "zero_flow_l1": float(target.abs().mean()),
                           **recon_errors(recon, target, mean_window(train)),
                           **code_stats(tokens, tok.fsq.codebook_size)}
    if prior is not None:
        counts = torch.bincount(all_tokens(tok, train).flatten(), minlength=tok.fsq.codebook_size).float()
        p = counts / counts.sum()
        with torch.no_grad():
            nll = -prior.log_prob(ev.obs(idx), ev.task[idx], tokens) / tokens.shape[1]
        out["prior_nll_per_token"] = float(nll.mean())
        out["unigram_nll_per_token"] = float(-(p.clamp_min(1e-8).log()[tokens]).mean())
    return out


def evaluate_skills(run: SkillRun, progress: bool = True) -> dict[str, Any]:
    """Per task: returns of the skill policy (the whole pipeline); plus the token report."""
    tok, prior, tr = run.tokenizer(progress), run.prior(progress), run.translator(progress)
    report: dict[str, Any] = {"tokens": token_report(run, tok, prior), "returns": {}}
    for task_id, task in enumerate(run.ds.tasks):
        policy = SkillPolicy(tok, prior, tr, task_id, run.cfg.seed)
        if progress:
            print(f"{task}: skill policy")
        report["returns"][task] = policy_returns(policy, **{**run.ds.env_settings, "task": task},
                                                 frame_stack=run.cfg.frame_stack, backgrounds=run.cfg.eval_backgrounds,
                                                 seeds=run.cfg.eval_seeds, episodes=run.cfg.eval_episodes,
                                                 progress=progress)
    means = [r[run.cfg.eval_backgrounds[0]]["mean"] for r in report["returns"].values()]
    report["mean_over_tasks"] = float(np.mean(means))
    report["collapsed"] = report["tokens"]["collapsed"]  # a collapsed tokenizer is flagged, not hidden
    return report


def write_report(run: SkillRun, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run (:func:`evaluate_skills`) and write its ``report.json``, with the config, dataset, tasks and
    the flow tier its skills were learned from (``oracle``: the simulator's exact flow and mask, privileged)."""
    report = evaluate_skills(run, progress)
    report.update(config=run.cfg.to_dict(), dataset=str(run.ds.path), tasks=run.ds.tasks,
                  flow_tier=run.cfg.flow_tier, flow_file=str(run.ds.flow_path))
    write_json(run.dir / "report.json", report)
    return report

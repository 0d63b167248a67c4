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


def token_report(run: SkillRun, tok: SkillTokenizer, prior: SkillPrior | None) -> dict[str, Any]:
    """Held-out quality (the eval split): flow L1 vs predicting zero flow, codebook use, prior NLL vs the
    unigram of the training tokens."""
    ev = ChunkData(run.ds, run.cfg, "eval", flow_scale=tok.flow_scale)
    idx = np.arange(len(ev))
    rng = np.random.default_rng(0)
    idx = rng.choice(idx, min(len(idx), 2048), replace=False)
    with torch.no_grad():
        target = ev.flow_windows(idx)
        recon, codes = tok(target, ev.first_frame(idx))
        agent = ev.agent_cells(idx)
    cells = agent[:, :, None].expand_as(target)
    out: dict[str, Any] = {"eval_windows": int(len(idx)),
                           # on the cells that show the agent (in units of flow_scale)
                           "flow_l1_agent": float((recon - target).abs()[cells].mean()),
                           "zero_flow_l1_agent": float(target.abs()[cells].mean()),
                           "flow_l1": float((recon - target).abs().mean()),
                           "zero_flow_l1": float(target.abs().mean())}
    train_tokens = all_tokens(tok, run.train_data)
    counts = torch.bincount(train_tokens.flatten(), minlength=tok.fsq.codebook_size).float()
    p = counts / counts.sum()
    out["codes_used"] = int((counts > 0).sum())
    out["codebook_size"] = tok.fsq.codebook_size
    out["perplexity"] = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    if prior is not None:
        tokens = tok.fsq.codes_to_indices(codes)
        with torch.no_grad():
            nll = -prior.log_prob(ev.obs(idx), ev.task[idx], tokens) / tokens.shape[1]
        unigram = -(p.clamp_min(1e-8).log()[tokens]).mean()
        out["prior_nll_per_token"] = float(nll.mean())
        out["unigram_nll_per_token"] = float(unigram)
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
    return report


def write_report(run: SkillRun, progress: bool = True) -> dict[str, Any]:
    """Evaluate a run (:func:`evaluate_skills`) and write its ``report.json``, with the config, dataset and tasks."""
    report = evaluate_skills(run, progress)
    report.update(config=run.cfg.to_dict(), dataset=str(run.ds.path), tasks=run.ds.tasks)
    write_json(run.dir / "report.json", report)
    return report

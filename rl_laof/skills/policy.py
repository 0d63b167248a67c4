"""The skill policy: the prior plans a skill for the task, the translator turns it into an H-step chunk of
actions, executed open loop before the next plan."""

from __future__ import annotations

import numpy as np
import torch

from rl_laof.models.skill_models import SkillPrior, SkillTokenizer, Translator
from rl_laof.skills.training import skill_input


class SkillPolicy:
    """Observations (N, 3s, H, W) uint8 -> actions, one H-step chunk per plan: the prior samples tokens
    (top-k) for the task, the translator turns them into H actions; the first ``execute`` of them (all by
    default) run open loop, then it replans (receding horizon, as QueST executes 8 of 32)."""

    def __init__(self, tokenizer: SkillTokenizer, prior: SkillPrior, translator: Translator, task_id: int,
                 seed: int = 0):
        self.tokenizer, self.prior, self.translator = tokenizer, prior, translator
        self.cfg = translator.cfg
        self.task_id = task_id
        self.gen = torch.Generator().manual_seed(seed)
        self.reset()

    def reset(self) -> None:
        self.queue: np.ndarray | None = None
        self.step = 0

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, obs: torch.Tensor) -> np.ndarray:
        """(N, H, A) actions of the skills ``codes`` (N, n, q) from observations ``obs``."""
        out = self.translator(skill_input(self.cfg, self.tokenizer, codes, obs), obs)
        return out.clamp(-1.0, 1.0).numpy()

    @torch.no_grad()
    def plan(self, obs: torch.Tensor) -> np.ndarray:
        task = torch.full((len(obs),), self.task_id, dtype=torch.long)
        tokens = self.prior.sample(obs, task, generator=self.gen)
        return self.decode(self.tokenizer.fsq.indices_to_codes(tokens), obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        every = self.cfg.resolved_execute
        if self.step % every == 0 or self.queue is None:
            self.queue = self.plan(torch.from_numpy(np.ascontiguousarray(obs)))
        action = self.queue[:, self.step % every]
        self.step += 1
        return action

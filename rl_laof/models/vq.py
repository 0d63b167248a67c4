"""Vector quantisation with EMA codebooks (van den Oord et al. 2017; LAPO's latent).

The latent (B, D) is split into ``codebooks x positions`` chunks of D / (codebooks x positions)
dimensions; chunk (c, p) is quantised with codebook c. Codebooks are moved by exponential moving
averages of the vectors assigned to their codes (no gradient), the encoder is pulled towards its
codes by a commitment loss, and gradients pass the quantiser straight through. Codes unused for a
while (a fast EMA, decay 0.9, of their assignments per batch below 0.01: unused for ~40 steps) are
restarted on random latents of the batch; the codebooks are initialised from the first batch.

Data-parallel: the EMA statistics are computed from the latents of the *global* batch (gathered
from every process), so all processes keep identical codebooks and N processes match one.
"""

from __future__ import annotations

import torch
from torch import nn

from rl_laof import distributed as dist


class VectorQuantizerEMA(nn.Module):
    def __init__(self, dim: int, codebooks: int, positions: int, codes: int, decay: float, commitment: float):
        super().__init__()
        if dim % (codebooks * positions):
            raise ValueError(f"latent dim {dim} does not split into {codebooks} x {positions} chunks")
        self.codebooks, self.positions, self.codes = codebooks, positions, codes
        self.chunk = dim // (codebooks * positions)
        self.decay, self.commitment = decay, commitment
        g = torch.Generator().manual_seed(1234)
        embed = torch.randn(codebooks, codes, self.chunk, generator=g)
        self.register_buffer("embed", embed)
        self.register_buffer("cluster_size", torch.ones(codebooks, codes))
        self.register_buffer("embed_sum", embed.clone())
        self.register_buffer("restart_seed", torch.zeros((), dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("usage", torch.ones(codebooks, codes))  # fast EMA of per-batch assignments

    def _chunks(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(len(z), self.codebooks, self.positions, self.chunk)

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, codebooks, positions) code indices."""
        x = self._chunks(z).transpose(0, 1).reshape(self.codebooks, -1, self.chunk)  # (C, B*P, d)
        d = torch.cdist(x, self.embed)  # (C, B*P, K)
        return d.argmin(-1).view(self.codebooks, len(z), self.positions).transpose(0, 1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (quantised z with straight-through gradient, commitment loss, stats). Always in fp32 (under a
        bf16 autocast too): nearest-code choices and the EMA codebooks need the precision."""
        with torch.autocast(z.device.type, enabled=False):
            return self._forward(z.float())

    def _forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        idx = self.indices(z.detach())
        q = torch.stack([self.embed[c][idx[:, c]] for c in range(self.codebooks)], 1)  # (B, C, P, d)
        q = q.reshape_as(z)
        if self.training:
            self._update(z.detach())
        commit = self.commitment * (z - q.detach()).pow(2).sum(-1).mean()
        usage = torch.stack([torch.bincount(idx[:, c].reshape(-1), minlength=self.codes)
                             for c in range(self.codebooks)])
        p = usage.float() / usage.sum(-1, keepdim=True)
        perplexity = torch.exp(-(p * torch.log(p + 1e-10)).sum(-1)).mean()
        return z + (q - z).detach(), commit, {"vq_perplexity": perplexity}

    @torch.no_grad()
    def _update(self, z: torch.Tensor) -> None:
        z = dist.all_gather_cat(z)  # the global batch, in rank order
        x = self._chunks(z)
        if not self.initialised:
            g = torch.Generator().manual_seed(4321)
            for c in range(self.codebooks):
                flat = x[:, c].reshape(-1, self.chunk)
                self.embed[c].copy_(flat[torch.randint(len(flat), (self.codes,), generator=g)])
                self.embed_sum[c].copy_(self.embed[c])
            self.initialised.fill_(True)
        idx = self.indices(z)
        for c in range(self.codebooks):
            flat = x[:, c].reshape(-1, self.chunk)
            onehot = nn.functional.one_hot(idx[:, c].reshape(-1), self.codes).to(flat.dtype)
            counts = onehot.sum(0)
            self.cluster_size[c].mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_sum[c].mul_(self.decay).add_(onehot.t() @ flat, alpha=1 - self.decay)
            n = self.cluster_size[c].sum()
            size = (self.cluster_size[c] + 1e-5) / (n + self.codes * 1e-5) * n  # Laplace smoothing
            self.embed[c].copy_(self.embed_sum[c] / size[:, None])
            self.usage[c].mul_(0.9).add_(counts, alpha=0.1)
            dead = self.usage[c] < 0.01
            if dead.any():  # restart unused codes on latents of this batch (same on every process)
                g = torch.Generator().manual_seed(int(self.restart_seed) * 7919 + c)
                pick = torch.randint(len(flat), (int(dead.sum()),), generator=g)
                self.embed[c][dead] = flat[pick]
                self.embed_sum[c][dead] = flat[pick]
                self.cluster_size[c][dead] = 1.0
                self.usage[c][dead] = 1.0
        self.restart_seed += 1

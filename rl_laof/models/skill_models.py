"""SOF skill models: a flow tokenizer with finite scalar quantisation, a skill prior and a translator.

    FSQ              z (..., q) -> bounded, rounded to levels L_i per dimension; straight-through gradient
                     (Mentzer et al. 2023); codes <-> indices in [0, prod L)
    SkillTokenizer   flow window (B, H, 2, S, S) -> per-step conv encoder -> causal temporal convs (stride 2)
                     -> causal transformer -> FSQ: (B, n, q) codes, n = H / 2^downsample   (QueST's encoder)
                     decoder: codes + the window's first frame -> the flow window (B, H, 2, S, S)
    SkillPrior       GPT over a window's n token indices, conditioned on the frame stack and the task;
                     top-k sampling
    Translator       (codes or decoded flow, frame stack) -> the chunk's H actions

Causality of the tokenizer: token j sees steps < (j + 1) 2^downsample and nothing later (the temporal convs
are left-padded by kernel - stride, the transformer is masked), so a chunk's first tokens are fixed once its
first steps are; ``tests/test_skills.py`` checks it by perturbing later steps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from rl_laof.models.blocks import ConvDecoder, ConvEncoder, mlp
from rl_laof.models.lam_model import to_float
from rl_laof.models.policy import PixelEncoder

if TYPE_CHECKING:  # the config of the stage above (rl_laof.skills) types the constructors, nothing more
    from rl_laof.skills.config import SkillsConfig


class FSQ(nn.Module):
    """Finite scalar quantisation: dimension i of z is squashed into L_i levels and rounded.

    Codes lie on the grid (k - L//2) / (L//2), k = 0..L-1 (so in [-1, 1]); an even L is shifted by half a
    step so that its L levels are symmetric about the rounding points, as in the FSQ paper."""

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        lv = torch.tensor(levels, dtype=torch.float32)
        self.register_buffer("levels", lv)
        self.register_buffer("half_width", torch.div(lv, 2, rounding_mode="floor"))
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), 0)
        self.register_buffer("basis", basis)
        self.dim = len(levels)
        self.codebook_size = int(math.prod(levels))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        eps = 1e-3
        half = (self.levels - 1) * (1 + eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Quantised codes (straight-through: the gradient is that of the bounded z)."""
        b = self.bound(z)
        q = b + (torch.round(b) - b).detach()
        return q / self.half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        digits = torch.round(codes * self.half_width + self.half_width).long()
        return (digits * self.basis).sum(-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        digits = torch.div(indices[..., None], self.basis, rounding_mode="floor") % self.levels.long()
        return (digits.float() - self.half_width) / self.half_width

    def code_bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Lowest and highest code per dimension."""
        return -self.half_width / self.half_width, (self.levels - 1 - self.half_width) / self.half_width


class CausalConv1d(nn.Module):
    """Conv1d over time whose output at block j only sees inputs up to the end of block j."""

    def __init__(self, channels: int, kernel: int, stride: int):
        super().__init__()
        self.pad = kernel - stride
        self.conv = nn.Conv1d(channels, channels, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T)
        return self.conv(F.pad(x, (self.pad, 0)))


def causal_mask(n: int, device=None) -> torch.Tensor:
    return torch.triu(torch.full((n, n), float("-inf"), device=device), 1)


def transformer(d: int, heads: int, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class SkillTokenizer(nn.Module):
    def __init__(self, cfg: SkillsConfig, image_size: int):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.fsq = FSQ(cfg.fsq_levels)
        self.step_encoder = ConvEncoder(2, d, cfg.width, cfg.flow_size)
        self.temporal = nn.ModuleList([CausalConv1d(d, cfg.conv_kernel, 2) for _ in range(cfg.downsample)])
        self.enc_pos = nn.Parameter(torch.zeros(1, cfg.tokens, d))
        self.encoder = transformer(d, cfg.heads, cfg.encoder_layers)
        self.to_code = nn.Linear(d, self.fsq.dim)
        # decoder
        self.from_code = nn.Linear(self.fsq.dim, d)
        self.frame_size = min(cfg.frame_size, image_size)
        if image_size % self.frame_size:
            raise ValueError(f"frame_size={cfg.frame_size} must divide the image size {image_size}")
        self.frame_encoder = ConvEncoder(3, d, cfg.width, self.frame_size)
        self.dec_pos = nn.Parameter(torch.zeros(1, 1 + cfg.tokens + cfg.chunk, d))
        self.queries = nn.Parameter(torch.zeros(1, cfg.chunk, d))
        self.decoder = transformer(d, cfg.heads, cfg.decoder_layers)
        self.step_decoder = ConvDecoder(d, 2, cfg.width, cfg.flow_size)
        for p in (self.enc_pos, self.dec_pos, self.queries):
            nn.init.normal_(p, std=0.02)

    def pre_quant(self, flow: torch.Tensor) -> torch.Tensor:
        """(B, H, 2, S, S) normalised flow -> (B, n, q) pre-quantisation codes."""
        b, h = flow.shape[:2]
        x = self.step_encoder(flow.flatten(0, 1)).view(b, h, -1).transpose(1, 2)  # (B, d, H)
        for conv in self.temporal:
            x = F.silu(conv(x))
        x = x.transpose(1, 2) + self.enc_pos
        x = self.encoder(x, mask=causal_mask(x.shape[1], x.device), is_causal=True)
        return self.to_code(x)

    def encode(self, flow: torch.Tensor) -> torch.Tensor:
        """Quantised codes (B, n, q)."""
        return self.fsq(self.pre_quant(flow))

    def decode(self, codes: torch.Tensor, first_frame: torch.Tensor) -> torch.Tensor:
        """Codes (B, n, q) and the window's first frame (B, 3, H, W) -> the flow window (B, H, 2, S, S)."""
        b = codes.shape[0]
        x = to_float(first_frame) if first_frame.dtype == torch.uint8 else first_frame
        if x.shape[-1] != self.frame_size:
            x = F.avg_pool2d(x, x.shape[-1] // self.frame_size)
        frame = self.frame_encoder(x)
        x = torch.cat([frame[:, None], self.from_code(codes), self.queries.expand(b, -1, -1)], 1) + self.dec_pos
        x = self.decoder(x)[:, -self.cfg.chunk:]
        s = self.cfg.flow_size
        return self.step_decoder(x.flatten(0, 1)).view(b, self.cfg.chunk, 2, s, s)

    def forward(self, flow: torch.Tensor, first_frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = self.encode(flow)
        return self.decode(codes, first_frame), codes


class SkillPrior(nn.Module):
    """p(token_0..n-1 | frame stack, task), autoregressive: [frame, task, tok_0 .. tok_{n-2}] -> logits."""

    def __init__(self, cfg: SkillsConfig, image_size: int, num_tasks: int):
        super().__init__()
        d = cfg.prior_d_model
        self.cfg, self.n = cfg, cfg.tokens
        self.codebook_size = cfg.codebook_size
        self.encoder = PixelEncoder(cfg.frame_stack, d, cfg.width, image_size)
        self.task = nn.Embedding(num_tasks, d)
        self.token = nn.Embedding(self.codebook_size, d)
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.n, d))
        nn.init.normal_(self.pos, std=0.02)
        self.body = transformer(d, cfg.heads, cfg.prior_layers)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, self.codebook_size)

    def context(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.encoder(obs), self.task(task)], 1)  # (B, 2, d)

    def logits(self, ctx: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, m + 1, V) for tokens 0..m given the context and the first m tokens (B, m)."""
        x = torch.cat([ctx, self.token(tokens)], 1)
        x = x + self.pos[:, : x.shape[1]] if x.shape[1] <= self.pos.shape[1] else x
        x = self.body(x, mask=causal_mask(x.shape[1], x.device), is_causal=True)
        return self.head(self.norm(x[:, 1:]))

    def forward(self, obs: torch.Tensor, task: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, n, V) of every token."""
        return self.logits(self.context(obs, task), tokens[:, :-1])

    def log_prob(self, obs: torch.Tensor, task: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logp = self(obs, task, tokens).log_softmax(-1)
        return logp.gather(-1, tokens[..., None])[..., 0].sum(-1)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, task: torch.Tensor, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, n) token indices, each drawn from the top-k of its conditional."""
        ctx = self.context(obs, task)
        tokens = torch.zeros(len(obs), 0, dtype=torch.long, device=obs.device)
        k = min(top_k or self.cfg.top_k, self.codebook_size)
        for _ in range(self.n):
            logits = self.logits(ctx, tokens)[:, -1]
            top, idx = logits.topk(k, -1)
            pick = torch.multinomial(top.softmax(-1), 1, generator=generator)
            tokens = torch.cat([tokens, idx.gather(-1, pick)], 1)
        return tokens


class Translator(nn.Module):
    """(skill, frame stack) -> the chunk's actions (B, H, A); the skill is FSQ codes (B, n, q) or a decoded
    flow window (B, H, 2, S, S), by ``cfg.translator_input``."""

    def __init__(self, cfg: SkillsConfig, image_size: int, action_dim: int):
        super().__init__()
        self.cfg, self.action_dim = cfg, action_dim
        feats = cfg.translator_hidden
        self.encoder = PixelEncoder(cfg.frame_stack, feats, cfg.width, image_size)
        skill_dim = (cfg.tokens * len(cfg.fsq_levels) if cfg.translator_input == "tokens"
                     else cfg.chunk * 2 * cfg.flow_size ** 2)
        self.skill = nn.Sequential(nn.Linear(skill_dim, feats), nn.SiLU())
        self.head = mlp(2 * feats, cfg.chunk * action_dim, cfg.translator_hidden)

    def forward(self, skill: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(obs), self.skill(skill.flatten(1))], -1)
        return self.head(x).view(len(obs), self.cfg.chunk, self.action_dim)

"""Policies from pixels that act through latent actions, and the decoders that turn latents into actions.

    PixelEncoder   o_{t-s+1..t} (uint8 stack) -> features
    BCPolicy       features -> target (a normalised latent, or an action)        MSE
    FlowPolicy     LAFP: x-prediction flow matching on normalised latents
                   z_tau = tau z + (1 - tau) z0,  z0 ~ N(0, I),  tau ~ U(0, 1),   loss ||z - x(z_tau, tau, obs)||^2
                   sampled with K Euler steps of v = (x - z_tau) / (1 - tau)
    ActionDecoder  normalised latent -> action
    LatentPCA      the principal directions of the normalised training latents (an RL agent's residual
                   action space: agents.latent_env)

Latents are normalised per dimension to [-1, 1] over the training set (centre (max + min) / 2, scale
(max - min) / 2), as LAFP does, so one noise scale fits every latent space.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rl_laof.models.blocks import ConvEncoder, KeypointEncoder, SpatialConvEncoder, mlp
from rl_laof.models.lam_model import to_float


class LatentNormalizer(nn.Module):
    """Per-dimension affine map of latents onto [-1, 1] (fit on the training latents)."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("centre", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))

    @classmethod
    def fit(cls, z: torch.Tensor) -> LatentNormalizer:
        norm = cls(z.shape[1])
        hi, lo = z.max(0).values, z.min(0).values
        norm.centre.copy_((hi + lo) / 2)
        norm.scale.copy_(((hi - lo) / 2).clamp_min(1e-6))  # a constant dimension stays finite
        return norm

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.centre) / self.scale


class LatentPCA(nn.Module):
    """The ``k`` leading principal directions of a set of latents: ``mean`` (D), ``components`` (k, D,
    orthonormal rows, by decreasing variance), ``std`` (k, the spread along each) and ``explained`` (k, each
    one's fraction of the total variance). ``offset(u)`` = sum_i u_i std_i components_i: u in units of
    the data's spread along each direction."""

    def __init__(self, dim: int, k: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("components", torch.zeros(k, dim))
        self.register_buffer("std", torch.ones(k))
        self.register_buffer("explained", torch.zeros(k))

    @classmethod
    def fit(cls, z: torch.Tensor, k: int) -> LatentPCA:
        if not 1 <= k <= z.shape[1]:
            raise ValueError(f"k={k} principal directions of {z.shape[1]}-D latents: use 1..{z.shape[1]}")
        z = z.double()
        mean = z.mean(0)
        _, s, vh = torch.linalg.svd(z - mean, full_matrices=False)
        var = s ** 2 / max(len(z) - 1, 1)
        pca = cls(z.shape[1], k)
        pca.mean.copy_(mean.float())
        pca.components.copy_(vh[:k].float())
        pca.std.copy_(var[:k].sqrt().clamp_min(1e-6).float())
        pca.explained.copy_((var[:k] / var.sum().clamp_min(1e-12)).float())
        return pca

    @property
    def k(self) -> int:
        return self.components.shape[0]

    def leading(self, k: int) -> LatentPCA:
        """The first ``k`` directions."""
        if not 1 <= k <= self.k:
            raise ValueError(f"{k} principal directions: {self.k} are stored; use 1..{self.k}")
        out = LatentPCA(self.mean.shape[0], k)
        out.load_state_dict({"mean": self.mean, "components": self.components[:k], "std": self.std[:k],
                             "explained": self.explained[:k]})
        return out

    def offset(self, u: torch.Tensor) -> torch.Tensor:
        return (u * self.std) @ self.components

    def coords(self, z: torch.Tensor) -> torch.Tensor:
        """Coordinates of latents in the directions, in units of their std (the inverse of mean + offset)."""
        return ((z - self.mean) @ self.components.T) / self.std


def random_shift(frames: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """DrQ's augmentation: pad every sample's frames by ``pad`` pixels (edges replicated) and crop back at
    one random integer offset per sample (the same for all its frames). uint8 stays uint8."""
    b, _, h, w = frames.shape
    x = F.pad(frames.float() if frames.dtype == torch.uint8 else frames, (pad,) * 4, mode="replicate")
    x = x.to(frames.dtype)
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).tolist()
    return torch.stack([x[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


#: Pixel encoder kinds: ``halving`` (4x4 stride-2 convs down to 4x4, the latent models' encoder), ``drq``
#: (DrQ-v2's 3x3 trunk on a 25x25 grid at 64 px), ``drq_s2`` (the same, last conv stride 2: a 13x13 grid),
#: ``keypoints`` (spatial softmax: 32 expected (x, y) positions from a 16x16 grid at 64 px).
ENCODERS = ("halving", "drq", "drq_s2", "keypoints")


class PixelEncoder(nn.Module):
    """Frame stack -> features (conv encoder of ``kind``, LayerNorm, tanh: DrQ-v2's trunk)."""

    def __init__(self, frame_stack: int, features: int, width: int, image_size: int, kind: str = "halving"):
        super().__init__()
        if kind not in ENCODERS:
            raise ValueError(f"Unknown encoder {kind!r}; valid: {', '.join(ENCODERS)}.")
        cin = 3 * frame_stack
        self.conv = (ConvEncoder(cin, features, width, image_size) if kind == "halving" else
                     KeypointEncoder(cin, features, width, image_size) if kind == "keypoints" else
                     SpatialConvEncoder(cin, features, width, image_size, 2 if kind == "drq_s2" else 1))
        self.norm = nn.LayerNorm(features)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # uint8 frames go channels-last before the float copy (the conv encoders' layout): one copy, not two
        x = to_float(obs.contiguous(memory_format=torch.channels_last)) if obs.dtype == torch.uint8 else obs
        return torch.tanh(self.norm(self.conv(x)))


class BCPolicy(nn.Module):
    """Behaviour cloning: features -> the target (deterministic)."""

    def __init__(self, encoder: PixelEncoder, out_dim: int, hidden: int):
        super().__init__()
        self.encoder = encoder
        self.head = mlp(encoder.norm.normalized_shape[0], out_dim, hidden)
        self.out_dim = out_dim

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs))

    def loss(self, obs: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return F.mse_loss(self(obs), target)

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(obs)


def timestep_embedding(tau: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding (B, dim) of flow times tau in [0, 1] (scaled by 1000, as diffusion models do)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = 1000.0 * tau.float().reshape(-1, 1) * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], 1)


class FlowPolicy(nn.Module):
    """LAFP: a conditional flow-matching policy over normalised latents, with x-prediction."""

    def __init__(self, encoder: PixelEncoder, out_dim: int, hidden: int, euler_steps: int = 3, time_embed: int = 64):
        super().__init__()
        self.encoder = encoder
        self.out_dim, self.euler_steps, self.time_embed = out_dim, euler_steps, time_embed
        feat = encoder.norm.normalized_shape[0]
        self.net = mlp(feat + out_dim + time_embed, out_dim, hidden, layers=3)

    def predict_x(self, features: torch.Tensor, z_tau: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """The network's estimate of the clean latent z from (z_tau, tau, observation features)."""
        return self.net(torch.cat([features, z_tau, timestep_embedding(tau, self.time_embed)], 1))

    def loss(self, obs: torch.Tensor, z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        z0 = torch.randn(z.shape, generator=generator)
        tau = torch.rand(len(z), 1, generator=generator)
        z_tau = tau * z + (1 - tau) * z0
        return F.mse_loss(self.predict_x(self.encoder(obs), z_tau, tau), z)

    @staticmethod
    def interpolation_start(z0: torch.Tensor, z_t: torch.Tensor, tau_i: torch.Tensor) -> torch.Tensor:
        """LAFP's inference-time interpolation: the ODE starts at (1 - tau_i) z0 + tau_i z_t."""
        tau_i = tau_i.reshape(-1, 1)
        return (1 - tau_i) * z0 + tau_i * z_t

    @torch.no_grad()
    def sample_from(self, features: torch.Tensor, z_start: torch.Tensor, tau_start: torch.Tensor | float = 0.0,
                    steps: int | None = None) -> torch.Tensor:
        """Integrate the ODE from (z_start, tau_start) to tau = 1 with ``steps`` Euler steps, evenly spaced.

        On the grid t_k = tau_start + (1 - tau_start) k / K the Euler step
        z += (t_{k+1} - t_k) (x - z) / (1 - t_k) is z += (x - z) / (K - k): the same number, without dividing
        by 1 - t_k (so tau_start near 1 stays finite); the last step lands on the final x-prediction.
        """
        k_steps = steps or self.euler_steps
        tau0 = torch.as_tensor(tau_start, dtype=torch.float32).reshape(-1, 1).expand(len(z_start), 1)
        z = z_start
        for k in range(k_steps):
            t_k = tau0 + (1 - tau0) * (k / k_steps)
            x = self.predict_x(features, z, t_k)
            z = z + (x - z) / (k_steps - k)
        return z

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Deployment: the ODE from pure noise z0 ~ N(0, I) at tau = 0."""
        features = self.encoder(obs)
        z0 = torch.randn(len(features), self.out_dim, generator=generator)
        return self.sample_from(features, z0, 0.0)


class ActionDecoder(nn.Module):
    """Normalised latent -> environment action (an MLP; actions are clipped by the env)."""

    def __init__(self, latent_dim: int, action_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(latent_dim, action_dim, hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class PixelIDM(nn.Module):
    """Inverse dynamics model from pixels: the channel-stacked pair (o_t stack, o_{t+1} stack) -> a_t (the
    relabelling baseline; the pair is one tensor so that augmentation shifts both frames alike)."""

    def __init__(self, frame_stack: int, action_dim: int, width: int, image_size: int, hidden: int):
        super().__init__()
        self.encoder = PixelEncoder(2 * frame_stack, hidden, width, image_size)  # 6s channels
        self.head = mlp(hidden, action_dim, hidden)

    def forward(self, pair: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(pair))

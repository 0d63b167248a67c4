"""Conv building blocks shared by the IDM, the FDMs and the flow decoder.

GroupNorm rather than BatchNorm everywhere: the statistics of a sample never depend on the other
samples of its batch, so a data-parallel run on N processes computes what one process does. Convs
followed by a norm have no bias: its true gradient is zero, and Adam would turn the rounding noise
in it into full-size random steps.
"""

from __future__ import annotations

import torch
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class Down(nn.Module):
    """4x4 stride-2 conv, GroupNorm, SiLU: halves the resolution."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), norm(cout), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Up(nn.Module):
    """Nearest x2 upsample, then a 3x3 conv over [upsampled, skip]."""

    def __init__(self, cin: int, cskip: int, cout: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(cin + cskip, cout, 3, 1, 1, bias=False), norm(cout), nn.SiLU())

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.net(x if skip is None else torch.cat([x, skip], 1))


def channels(width: int, levels: int) -> list[int]:
    """width, 2 width, 4 width, 4 width, ...: the channel count after each halving."""
    return [width * min(2 ** i, 4) for i in range(levels)]


class ConvEncoder(nn.Module):
    """(C, H, W) images -> a feature vector: ``levels`` halvings down to 4x4, then a linear layer.

    The input goes channels-last before the convs (oneDNN's own layout on CPU; the weights stay contiguous, so
    any init, e.g. SB3's orthogonal one, works on them): a training step of the latent policy 1.11x and of the
    LAOF model 1.19x faster, measured interleaved in one process on 2 cores. The same function, another
    summation order: outputs agree with the NCHW path to float rounding, not bit for bit."""

    def __init__(self, cin: int, out_dim: int, width: int, image_size: int):
        super().__init__()
        levels = _levels(image_size)
        ch = channels(width, levels)
        self.convs = nn.Sequential(*[Down(a, b) for a, b in zip([cin, *ch[:-1]], ch, strict=True)])
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(ch[-1] * 16, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten reads the logical (C, H, W) order whatever the layout, so the head sees what it saw before
        return self.head(self.convs(x.contiguous(memory_format=torch.channels_last)))


class SpatialConvEncoder(nn.Module):
    """DrQ-v2's trunk: a 3x3 stride-2 conv, then 3x3 convs (ReLU, no norm) at ``width`` channels, keeping a
    fine spatial grid (25x25 at 64 px) for the linear layer: positions of small parts survive, which four
    halvings to 4x4 blur. ``last_stride`` 2 halves the last grid (13x13): ~4x fewer linear weights."""

    def __init__(self, cin: int, out_dim: int, width: int, image_size: int, last_stride: int = 1):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(cin, width, 3, 2), nn.ReLU(), nn.Conv2d(width, width, 3, 1), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1), nn.ReLU(), nn.Conv2d(width, width, 3, last_stride), nn.ReLU())
        side = (image_size - 3) // 2 + 1 - 4
        side = (side - 3) // last_stride + 1
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * side * side, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.convs(x))


class KeypointEncoder(nn.Module):
    """Spatial-softmax keypoints (Levine et al. 2016, robomimic's visual policies): a trunk of 3x3 convs keeps a
    grid of image_size / 4 (16x16 at 64 px), a 1x1 conv turns it into ``keypoints`` heat maps, and each map's
    softmax over positions (one learned temperature) gives its expected (x, y) in [-1, 1]. The 2K coordinates
    say where things are, which is what a controller of joints needs and what a flattened grid spreads over
    many weights; a linear layer maps them to ``out_dim``."""

    def __init__(self, cin: int, out_dim: int, width: int, image_size: int, keypoints: int = 32):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size={image_size}: the keypoint encoder needs a multiple of 4.")
        w2 = 2 * width
        self.convs = nn.Sequential(
            nn.Conv2d(cin, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(width, w2, 3, 2, 1), nn.ReLU(), nn.Conv2d(w2, w2, 3, 1, 1), nn.ReLU(),
            nn.Conv2d(w2, keypoints, 1))
        side = image_size // 4
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, side), torch.linspace(-1, 1, side), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], 1))  # (side^2, 2)
        self.log_temperature = nn.Parameter(torch.zeros(()))
        self.head = nn.Linear(2 * keypoints, out_dim)

    def positions(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, 2): each heat map's expected (x, y), in [-1, 1] from the left / top edge's cell."""
        maps = self.convs(x).flatten(2)  # (B, K, side^2)
        with torch.autocast(x.device.type, enabled=False):  # positions to a fraction of a cell: fp32
            attention = torch.softmax(maps.float() / self.log_temperature.exp(), dim=-1)
            return attention @ self.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.positions(x).flatten(1))


class ConvDecoder(nn.Module):
    """A vector -> (C, H, W) images, upsampling from 4x4; the last doubling is a transposed conv that
    writes the C output channels directly (no full-resolution hidden layer: 3-5x cheaper on CPU).
    The flow decoder is one: it sees only z."""

    def __init__(self, in_dim: int, cout: int, width: int, image_size: int):
        super().__init__()
        levels = _levels(image_size)
        ch = channels(width, levels)[::-1]  # deepest first
        self.c0 = ch[0]
        self.fc = nn.Linear(in_dim, ch[0] * 16)
        self.ups = nn.ModuleList([Up(a, 0, b) for a, b in zip(ch[:-1], ch[1:], strict=True)])
        self.out = nn.ConvTranspose2d(ch[-1], cout, 4, 2, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(len(z), self.c0, 4, 4)
        for up in self.ups:
            x = up(x)
        return self.out(x)


class UNet(nn.Module):
    """Pixel FDM (LAPO): U-Net over o_t; the latent action enters tiled at the input and added at the
    bottleneck, so the prediction can depend on it at every scale. The last doubling is a transposed
    conv to the output channels (as in :class:`ConvDecoder`), and the output is added to ``residual``
    (the last frame of o_t): the network predicts the change."""

    def __init__(self, cin: int, cout: int, cond_dim: int, width: int, image_size: int, cond_channels: int = 8):
        super().__init__()
        levels = _levels(image_size)
        ch = channels(width, levels)
        self.cond_in = nn.Linear(cond_dim, cond_channels)
        self.downs = nn.ModuleList([Down(a, b) for a, b in zip([cin + cond_channels, *ch[:-1]], ch, strict=True)])
        self.cond_mid = nn.Linear(cond_dim, ch[-1])
        self.mid = nn.Sequential(nn.Conv2d(ch[-1], ch[-1], 3, 1, 1, bias=False), norm(ch[-1]), nn.SiLU())
        # up path: from the bottleneck back to half resolution, each level joined with its Down's output
        self.ups = nn.ModuleList([Up(ch[i + 1], ch[i], ch[i]) for i in range(levels - 2, -1, -1)])
        self.out = nn.ConvTranspose2d(ch[0], cout, 4, 2, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        c = self.cond_in(cond)[:, :, None, None].expand(-1, -1, h, w)
        x = torch.cat([x, c], 1)
        feats = []
        for down in self.downs:
            x = down(x)
            feats.append(x)
        x = self.mid(x + self.cond_mid(cond)[:, :, None, None])
        for up, skip in zip(self.ups, feats[-2::-1], strict=True):
            x = up(x, skip)
        out = self.out(x)
        return out if residual is None else out + residual


class LossModule(nn.Module):
    """A model whose ``forward`` is its training loss, ``losses(batch, labelled, generator, with_labels)`` ->
    (loss, metrics): DistributedDataParallel synchronises the gradients of what ``forward`` computes."""

    def losses(self, batch: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor] | None = None,
               generator: torch.Generator | None = None, with_labels: bool = False
               ) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forward(self, batch: dict[str, torch.Tensor], labelled: dict[str, torch.Tensor] | None = None,
                generator: torch.Generator | None = None, with_labels: bool = False
                ) -> tuple[torch.Tensor, dict[str, float]]:
        return self.losses(batch, labelled, generator, with_labels)


def mlp(din: int, dout: int, hidden: int = 256, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = din
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.SiLU()]
        d = hidden
    return nn.Sequential(*mods, nn.Linear(d, dout))


def _levels(image_size: int) -> int:
    levels = 0
    s = image_size
    while s > 4:
        if s % 2:
            raise ValueError(f"image size {image_size}: must halve evenly down to 4 (e.g. 64, 96, 128)")
        s //= 2
        levels += 1
    return levels

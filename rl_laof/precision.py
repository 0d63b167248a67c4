"""Training precision: bfloat16 autocast on CPUs that compute it natively, shared by every training loop."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def autocast(precision: str):
    """The forward pass at ``precision`` (a resolved one: "bf16" = bfloat16 autocast for convolutions and
    matmuls, norms and losses stay fp32; "fp32" = a no-op context)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

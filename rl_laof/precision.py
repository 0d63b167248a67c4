"""Training precision, shared by every training loop: bfloat16 autocast, and where the CPU computes it natively."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def autocast(precision: str):
    """The forward pass at ``precision`` (a resolved one: "bf16" = bfloat16 autocast for convolutions and
    matmuls, norms and losses stay fp32; "fp32" = a no-op context)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def native_bf16() -> str:
    """"bf16" where oneDNN computes bfloat16 natively (AVX-512-BF16 / AMX), else "fp32" (emulated bf16 is slower):
    what a config's precision "auto" resolves to."""
    try:
        return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    except Exception:  # an old torch without the query
        return "fp32"

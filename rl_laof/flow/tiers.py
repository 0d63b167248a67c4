"""Flow targets in tiers: what a LAOF target may be built from, named so that every result says it.

No video comes with the simulator's exact flow or its agent mask, so a claim about learning from video is
decided on a tier that does not use them, and the oracle is the upper bound (DESIGN.md, "Privileged
information is named"):

=========== ====================== =========================================== ==========================
tier        flow                   mask                                        simulator arrays it reads
=========== ====================== =========================================== ==========================
oracle      exact (reprojection)   exact agent mask (segmentation render)      depth, poses, geom ids, mask
estimated   TV-L1 from RGB frames  exact agent mask, standing in for a         agent mask only
                                   segmenter (LAOF used a text-prompted one)
rgb         TV-L1 from RGB frames  none: every pixel's flow, background and    none
                                   camera shake included
=========== ====================== =========================================== ==========================

The ``rgb`` tier's choice of "no mask" (rather than a mask estimated from pixels) is deliberate and measured
(docs/lam.md): its target then also carries the distractors' motion, which is what a user without
a segmenter gets. Each tier maps to a flow file (``flow-<method>.h5``, ``python -m rl_laof.flow``) and an
agent-flow source of :mod:`rl_laof.flow.calibrate`.
"""

from __future__ import annotations

FLOW_TIERS = ("oracle", "estimated", "rgb")

#: arrays of a dataset (and its exact flow file) that only a simulator provides; the ``rgb`` tier reads none
SIMULATOR_KEYS = ("states", "physics_states", "agent_mask", "depth", "geom_id", "camera_pos", "camera_mat",
                  "geom_xpos", "geom_xmat", "shake_affine", "agent_flow_camfree", "agent_camfree")


def check_tier(tier: str, source: str = "observed") -> None:
    """A clear error for an unknown tier, or a flow source the tier cannot have (the camera-free agent flow is
    the simulator's: oracle only)."""
    if tier not in FLOW_TIERS:
        raise ValueError(f"flow_tier={tier!r}: use one of {', '.join(FLOW_TIERS)}")
    if source not in ("observed", "camfree"):
        raise ValueError(f"flow_source={source!r}: use 'observed' or 'camfree'")
    if source == "camfree" and tier != "oracle":
        raise ValueError(f"flow_source='camfree' removes the camera shake with the simulator's poses: it exists "
                         f"in the oracle tier only (flow_tier={tier!r})")


def flow_method(tier: str) -> str:
    """The flow file a tier's target comes from: ``exact`` for the oracle, ``estimate`` (RGB only) otherwise."""
    check_tier(tier)
    return "exact" if tier == "oracle" else "estimate"


def agent_source(tier: str, source: str = "observed") -> str:
    """The agent-flow source (:data:`rl_laof.flow.calibrate.FLOW_SOURCES`) of a tier: the flow file's flow
    inside the agent mask (``observed``), the oracle's camera-free flow, or the unmasked flow (``rgb``)."""
    check_tier(tier, source)
    return "unmasked" if tier == "rgb" else source

"""Optical-flow targets: exact flow by reprojection, flow estimated from RGB (dual TV-L1), on Numba
(CPU) or CuPy (GPU) kernels; LAOF's agent-flow encoding; ``python -m rl_laof.flow`` fills a dataset.
"""

from rl_laof.flow.backends import BACKENDS, estimate_flow, exact_flow, resolve_backend
from rl_laof.flow.encoding import agent_flow, decode_flow_rgb, encode_flow_rgb, flow_to_uint8
from rl_laof.flow.estimate import TVL1Params, estimate_flow_numba
from rl_laof.flow.exact import FlowInputs, exact_flow_numba, exact_flow_numpy

__all__ = ["BACKENDS", "FlowInputs", "TVL1Params", "agent_flow", "decode_flow_rgb", "encode_flow_rgb",
           "estimate_flow", "estimate_flow_numba", "exact_flow", "exact_flow_numba", "exact_flow_numpy",
           "flow_to_uint8", "resolve_backend"]

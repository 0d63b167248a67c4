"""Optical-flow targets: exact flow by reprojection (NumPy reference, Numba kernel).

Estimated flow (Numba / CuPy), the LAOF encoding and ``python -m rl_laof.flow`` follow (issue 4).
"""

from rl_laof.flow.exact import FlowInputs, exact_flow_numba, exact_flow_numpy

__all__ = ["FlowInputs", "exact_flow_numba", "exact_flow_numpy"]

r"""Numerics shared by the update rules: the compute dtype, overflow-free norms and ``hypot``.

The precision rule (``docs/precision.md``): the algorithm's scalars (the time :math:`t`, bias
corrections, schedule values, energies, potentials, norms, random numbers) are computed in the
*compute dtype* :func:`compute_dtype` = ``result_type(param dtype, float32)`` and cast where they
touch a leaf. Norms are scaled by the largest magnitude, so no square overflows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from array_api_compat import is_torch_array

from physopt_ref.core.tracing import is_tracing
from physopt_ref.core.tree import expand_to_leaf, per_run_max, tree_dot

__all__ = ["compute_dtype", "hypot", "itemsize", "tree_norm"]


def compute_dtype(xp: Any, dtype: Any) -> Any:
    """The dtype the algorithm's scalars are computed in: ``result_type(dtype, float32)``.

    float16 and bfloat16 parameters give float32; float32 and float64 give themselves. In
    float16 the step count is infinite past 65504 and in bfloat16 it is exact only up to 256,
    and :math:`1 - 0.999^t` is 0 in bfloat16 (0.999 rounds to 1): such scalars are formed here.
    """
    # result_type(dtype, float32) for a real floating dtype, written with finfo: torch.compile
    # cannot trace torch.result_type (it returns a dtype, not a tensor).
    return xp.float32 if xp.finfo(dtype).bits < 32 else dtype


def tree_norm(xp: Any, leaves: Sequence[Any], batch_ndim: int) -> Any:
    r"""The Euclidean norm of a whole tree per run, in the compute dtype, without overflow.

    :math:`\lVert x\rVert = s \sqrt{\sum_i (x_i/s)^2}` with :math:`s = \max_i |x_i|` (per run;
    1 where :math:`s` is 0 or not finite): no square overflows or underflows, so a tree whose
    norm is representable (up to ``finfo.max``) gets it to rounding, where the plain
    :math:`\sqrt{\sum x_i^2}` is infinite once :math:`|x| > \sqrt{\text{finfo.max}}` (256
    in float16, 1.8e19 in float32). A tree with an infinite or NaN element gets inf or NaN.
    The leaves are cast to :func:`compute_dtype` first.
    """
    cdtype = compute_dtype(xp, leaves[0].dtype)
    cast = [x if x.dtype == cdtype else xp.astype(x, cdtype) for x in leaves]
    cast = [x for x in cast if all(n > 0 for n in x.shape[batch_ndim:])] or cast[:1]
    if not all(n > 0 for n in cast[0].shape[batch_ndim:]):  # no elements at all
        return tree_dot(xp, cast, cast, batch_ndim)
    scale = per_run_max(xp, xp.abs(cast[0]), batch_ndim)
    for x in cast[1:]:
        scale = xp.maximum(scale, per_run_max(xp, xp.abs(x), batch_ndim))
    ok = xp.isfinite(scale) & (scale > 0.0)
    s = xp.where(ok, scale, xp.ones_like(scale))
    scaled = [x / expand_to_leaf(xp, s, x, batch_ndim) for x in cast]
    return s * xp.sqrt(tree_dot(xp, scaled, scaled, batch_ndim))


def hypot(xp: Any, x: Any, y: Any) -> Any:
    r""":math:`\sqrt{x^2 + y^2}` without forming the squares (no overflow, no underflow).

    ``xp.hypot``, except inside ``torch.compile``: inductor lowers ``torch.hypot`` to a scalar
    library call per element, which cost Adam's compiled, donated step about 3.5 ns per float32
    element (N = 1e7, one thread: 0.87 of the memory floor with :math:`v` and :math:`g^2`, 0.32
    with ``torch.hypot``; ``benchmarks/bench_floor.py``). There the same value is formed as
    :math:`h\sqrt{1 + (l/h)^2}` with :math:`h = \max(|x|,|y|)`, :math:`l = \min(|x|,|y|)`
    (0 where both are 0), which fuses into the step's one loop; it equals ``hypot`` to
    rounding.
    """
    if is_torch_array(x) and is_tracing(x):  # inside torch.compile
        ax, ay = xp.abs(x), xp.abs(y)
        hi, lo = xp.maximum(ax, ay), xp.minimum(ax, ay)
        q = lo / xp.where(hi > 0, hi, xp.ones_like(hi))
        return hi * xp.sqrt(1.0 + q * q)
    return xp.hypot(x, y)


def itemsize(xp: Any, dtype: Any) -> int:
    """Bytes of one element of ``dtype`` in namespace ``xp`` (bool, integer, real or complex)."""
    if dtype == xp.bool:
        return 1
    if xp.isdtype(dtype, "complex floating"):
        return 2 * (xp.finfo(dtype).bits // 8)
    info = xp.finfo(dtype) if xp.isdtype(dtype, "real floating") else xp.iinfo(dtype)
    return info.bits // 8

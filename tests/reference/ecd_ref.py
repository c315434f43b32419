"""Scalar float64 references for BBI and ECDSep, written straight from the update equations.

Plain Python floats and loops, one run at a time, no arrays: a parameter tree is a list of
leaves, each a flat list of floats (with its shape kept only to draw the random numbers).
Equations: ``shared/specs/ecd.md`` §1.3-1.4 (BBI), §2 (ΔV tuning), §3.2 (ECDSep), with the
project's decisions (whole-tree initial normalisation, seeded draws, no NaN guards) documented in
``physopt_ref.bbi`` / ``physopt_ref.ecdsep``. The random numbers are the project's counter-based
Philox-4x32-10 stream (seed, call count, leaf index as the stream), computed by the independent
Python-integer reference ``philox_ref`` (not by the library).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from . import philox_ref

Leaves = list[list[float]]
LossGrad = Callable[[Leaves], tuple[float, Leaves]]


def _sq(leaves: Leaves) -> float:
    total = 0.0
    for leaf in leaves:
        for v in leaf:
            total += v * v
    return total


def _draw(kind: str, seed: int, count: int, shapes: list[tuple[int, ...]],
          member: int = 0) -> Leaves:
    out = []
    for i, shape in enumerate(shapes):
        law = "uniform" if kind == "cube" else "normal"
        vals = philox_ref.draw(law, seed, count, shape, 0, i, 64, member).ravel()
        out.append([float(v) - 0.5 if kind == "cube" else float(v) for v in vals])
    return out


def bbi_reference(
    shapes: list[tuple[int, ...]],
    x0: Leaves,
    loss_grad: LossGrad,
    steps: int,
    *,
    lr: float,
    v0: float = 0.0,
    delta_e: float = 0.0,
    rescale: bool = True,
    t0: int | None = 1000,
    t1: int | None = 3000,
    n_fixed_bounces: int = 1,
    eps1: float = 1e-10,
    eps2: float = 1e-40,
    seed: int = 0,
    bounce_direction: str = "cube",
    v0_tuning: bool = False,
    member: int = 0,
) -> list[dict]:
    """Run BBI for ``steps`` calls; return per call a dict with theta, pi, E, V, floor, event."""
    theta = [list(leaf) for leaf in x0]
    pi = [[0.0] * len(leaf) for leaf in x0]
    energy = 0.0
    floor = v0
    best = math.inf
    c0 = c1 = nb = 0
    started = False
    out = []
    for count in range(steps):
        F, g = loss_grad(theta)
        V = F - floor
        active = V > 0.0 if v0_tuning else V > eps2
        event = 0
        if active:
            if not started:
                energy = V + delta_e
                gnorm = math.sqrt(_sq(g))
                shell0 = (energy - V) * (energy + V) / V  # = E^2/V0 - V0
                mag = math.sqrt(max(shell0, 0.0))
                pi = [[-mag * v / gnorm if gnorm > 0 else 0.0 for v in leaf] for leaf in g]
                started = True
            E = energy
            p2 = _sq(pi)
            r = 1.0
            if rescale:
                target = (E - V) * (E + V) / V  # = E^2/V - V
                if abs(p2 - target) < eps1 or target < 0.0 or p2 == 0.0:
                    r = 1.0
                else:
                    r = math.sqrt(target / p2)
            fixed_hit = t0 is not None and n_fixed_bounces > 0 and c0 == t0
            progress_hit = t1 is not None and c1 == t1
            if not (fixed_hit or progress_hit):
                event = 1
                for leaf_p, leaf_g, leaf_t in zip(pi, g, theta, strict=True):
                    for j in range(len(leaf_p)):
                        leaf_p[j] = r * leaf_p[j] - 0.5 * lr * (V / E + E / V) * leaf_g[j]
                        leaf_t[j] = leaf_t[j] + lr * (V / E) * leaf_p[j]
                c0 += 1
                c1 += 1
                if V < best:
                    best = V
                    c1 = 0
            else:
                event = 2
                d = _draw(bounce_direction, seed, count, shapes, member)
                fac = math.sqrt(p2 / _sq(d))
                pi = [[fac * v for v in leaf] for leaf in d]
                if fixed_hit:
                    nb += 1
                    c0 = 0 if nb < n_fixed_bounces else c0 + 1
                c1 = 0
        elif v0_tuning:
            event = 3
            new_floor = F - 4.0 * (floor - F)
            if started:  # our deviation 9: a started run keeps E - V across the move
                energy += floor - new_floor
            floor = new_floor
        out.append(
            {
                "theta": [list(x) for x in theta],
                "pi": [list(x) for x in pi],
                "energy": energy,
                "potential": V,
                "floor": floor,
                "event": event,
            }
        )
    return out


def ecdsep_reference(
    shapes: list[tuple[int, ...]],
    x0: Leaves,
    loss_grad: LossGrad,
    steps: int,
    *,
    lr: float,
    eta: float,
    nu: float = 1e-5,
    s: float = 1.0,
    f0: float = 0.0,
    delta_e: float = 0.0,
    rescale: bool = True,
    weight_decay: float = 0.0,
    eps1: float = 1e-10,
    eps2: float = 1e-40,
    seed: int = 0,
    f0_tuning: bool = False,
    member: int = 0,
) -> list[dict]:
    """Run ECDSep for ``steps`` calls; return per call a dict with q, p, e^E, V, floor, event."""
    q = [list(leaf) for leaf in x0]
    p = [[0.0] * len(leaf) for leaf in x0]
    exp_energy = 0.0
    floor = f0
    started = False
    out = []
    for count in range(steps):
        F, g = loss_grad(q)
        Ft = F + 0.5 * weight_decay * _sq(q)
        gap = Ft - floor
        V = gap**eta if gap > 0.0 else 0.0
        active = V > 0.0 if f0_tuning else V > eps2
        event = 0
        if active:
            event = 1
            if not started:
                exp_energy = V * (s + delta_e)
                # p0 along -∇F̃ (our deviation 7: weight decay is the coupled-L2 transform in
                # front of the step; the authors' code takes -∇F, without the w q term).
                gt = [[v + weight_decay * x for v, x in zip(lg, lq, strict=True)]
                      for lg, lq in zip(g, q, strict=True)]
                gnorm = math.sqrt(_sq(gt))
                p = [
                    [-math.sqrt(delta_e) * v / gnorm if gnorm > 0 else 0.0 for v in leaf]
                    for leaf in gt
                ]
                started = True
            c = 1.0
            if rescale:
                p2 = _sq(p)
                target = exp_energy / V - s
                if abs(target - p2) < eps1 or target < 0.0 or p2 == 0.0:
                    c = 1.0
                else:
                    c = math.sqrt(target / p2)
            for leaf_p, leaf_g, leaf_q in zip(p, g, q, strict=True):
                for j in range(len(leaf_p)):
                    force = leaf_g[j] + weight_decay * leaf_q[j]
                    leaf_p[j] = c * leaf_p[j] - lr * eta / gap * force
            p2 = _sq(p)
            n = math.sqrt(p2)
            for leaf_p, leaf_q in zip(p, q, strict=True):
                for j in range(len(leaf_p)):
                    leaf_q[j] = leaf_q[j] + lr * 2.0 * leaf_p[j] / (s + p2)
            if nu > 0.0 and n > 0.0:
                z = _draw("isotropic", seed, count, shapes, member)
                u = [[a / n + nu * b for a, b in zip(lp, lz, strict=True)]
                     for lp, lz in zip(p, z, strict=True)]
                un = math.sqrt(_sq(u))
                p = [[n * a / un for a in leaf] for leaf in u]
        elif f0_tuning and gap <= 0.0:
            event = 3
            floor = Ft - 4.0 * (floor - Ft)
        out.append(
            {
                "q": [list(x) for x in q],
                "p": [list(x) for x in p],
                "exp_energy": exp_energy,
                "potential": V,
                "floor": floor,
                "event": event,
            }
        )
    return out

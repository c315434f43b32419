"""Toy molecular energies: Lennard-Jones and Morse clusters of N atoms in 3-D.

Points are flattened coordinates ``x = (x_1, y_1, z_1, …, x_N, y_N, z_N)`` (``dim = 3N``),
batched over leading axes. Energies in reduced units (ε = 1; σ = 1 for LJ, r_e = 1 for Morse).

Published putative global minima (Cambridge Cluster Database, CCD):

- LJ, N = 2..20 and 38: D. J. Wales & J. P. K. Doye, J. Phys. Chem. A 101, 5111 (1997),
  arXiv:cond-mat/9803344; values as quoted in SCIPY ``go_funcs_L.py`` ``LennardJones.minima``
  (N ≤ 20; its N = 20 entry −77.1777043 is a typo for −77.177043) and in public CCD
  transcriptions (spec ``problems.md`` §3.2, all agreeing digit for digit; the spec's own
  basin-hopping reproduced each to 6 decimals).
- Morse ρ = 6, N = 2..20 and 38: J. P. K. Doye & D. J. Wales, J. Chem. Soc. Faraday Trans.
  93, 4233 (1997), arXiv:cond-mat/9709201; CCD Morse table
  (doye.chem.ox.ac.uk/jon/structures/Morse/tables.html) as transcribed in public code (array
  ``std_ans_morse_clst``). N ≤ 14 were re-computed in spec ``problems.md`` §3.3 (N = 6 differs
  by 1 in the 6th decimal: the octahedron gives −12.487809004, the table −12.487810).

Verified here (``data/cluster_minima.npz``, made by :func:`regenerate_cluster_minima`:
growth-seeded basin-hopping with SciPy, about 45 s): for LJ N = 5..20 and 38 and Morse
N = 5..20 a structure whose energy matches the table to 1e-6 (2e-6 for Morse N = 6), so the
transcribed Morse values for N = 15..20 are confirmed too. Morse N = 38 is *not* verified: the
relaxed fcc truncated octahedron gives −157.406902, above the table's −157.477108 (for ρ = 6
the M38 global minimum is another structure, not built here); its location is ``None``.

Where a structure can be built (:func:`seed_structure`: N = 2, 3, 4 exact, N = 5, 6, 7, 13,
19 and 38 as ideal polyhedra to be relaxed), the tests relax it with SciPy's L-BFGS on
this module's energy and gradient and compare with the table.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import asarray_like, host_uniform
from ._base import KnownMinimum, Problem
from ._cluster_moves import cut_and_splice, hop

__all__ = [
    "LJ_MINIMA",
    "MORSE6_MINIMA",
    "Cluster",
    "lennard_jones",
    "morse",
    "random_packing",
    "regenerate_cluster_minima",
    "relax",
    "seed_structure",
    "truncated_octahedron38",
]

#: LJ global-minimum energies (ε units), CCD / Wales & Doye 1997 (spec problems.md §3.2).
LJ_MINIMA: dict[int, float] = {
    2: -1.0, 3: -3.0, 4: -6.0, 5: -9.103852, 6: -12.712062, 7: -16.505384,
    8: -19.821489, 9: -24.113360, 10: -28.422532, 11: -32.765970, 12: -37.967600,
    13: -44.326801, 14: -47.845157, 15: -52.322627, 16: -56.815742, 17: -61.317995,
    18: -66.530949, 19: -72.659782, 20: -77.177043, 38: -173.928427,
}  # fmt: skip

#: Morse (ρ = 6) global-minimum energies, CCD / Doye & Wales 1997 (see the module docstring).
MORSE6_MINIMA: dict[int, float] = {
    2: -1.0, 3: -3.0, 4: -6.0, 5: -9.044930, 6: -12.487810, 7: -16.207580,
    8: -19.327420, 9: -23.417190, 10: -27.473283, 11: -31.521880, 12: -36.400278,
    13: -42.439863, 14: -45.619277, 15: -49.748409, 16: -53.845835, 17: -57.941386,
    18: -62.689245, 19: -68.492285, 20: -72.507782, 38: -157.477108,
}  # fmt: skip

_LJ_PAIR_R = 2.0 ** (1.0 / 6.0)


class Cluster(Problem):
    r"""Pair-potential cluster energy ``E(X) = Σ_{i<j} φ(r_ij)``, ``r_ij = |x_i − x_j|``.

    - ``kind="lj"``: ``φ(r) = 4(r^{−12} − r^{−6})`` (pair minimum −1 at ``r = 2^{1/6}``);
      ``∇_i E = Σ_j 24(r^{−8} − 2r^{−14})(x_i − x_j)``.
    - ``kind="morse"``: ``φ(r) = e^{ρ(1−r)}(e^{ρ(1−r)} − 2)`` (pair minimum −1 at ``r = 1``);
      ``∇_i E = Σ_j −2ρ e^{ρ(1−r)}(e^{ρ(1−r)} − 1)(x_i − x_j)/r``.

    Source: spec ``problems.md`` §3.1, §3.3; known minima from the Cambridge Cluster
    Database (LJ: Wales & Doye 1997; Morse: Doye & Wales 1997), see :data:`LJ_MINIMA`,
    :data:`MORSE6_MINIMA` and the module docstring. E is invariant under translations, rotations and
    permutations, so minimizers are never isolated. Evaluation forms all N² pairs per member
    (memory ``O(batch · N² · 3)``); coincident atoms give ``inf``/``nan`` as the physics does.

    Attributes
    ----------
    n_atoms : int
    kind : str
    rho : float or None
    minima : tuple of KnownMinimum
        The CCD global minimum for this N when tabulated. Locations: exact for N = 2, 3, 4
        (dimer, equilateral triangle, regular tetrahedron; also listed for Morse with ρ ≠ 6);
        for the other N, coordinates found by this module's :func:`regenerate_cluster_minima`
        (basin-hopping, stored in ``data/cluster_minima.npz``) whose energy matches the table
        to 1e-6 (2e-6 for Morse N = 6), where it did; ``None`` otherwise (Morse N = 38).
    """

    def __init__(self, n_atoms: int, kind: str, rho: float = 6.0, *, seed: int = 0) -> None:
        if int(n_atoms) != n_atoms or n_atoms < 2:
            raise ValueError(f"{kind}: n_atoms (N) must be an integer >= 2, got {n_atoms}")
        if kind not in ("lj", "morse"):
            raise ValueError(f"kind must be 'lj' or 'morse', got {kind!r}")
        if kind == "morse" and not (math.isfinite(rho) and rho > 0):
            raise ValueError(f"morse: rho (ρ) must be finite and > 0, got {rho}")
        self.n_atoms = int(n_atoms)
        self.kind = kind
        self.rho = float(rho) if kind == "morse" else None
        self.dim = 3 * self.n_atoms
        self.name = "lennard_jones" if kind == "lj" else "morse"
        self.pair_distance = _LJ_PAIR_R if kind == "lj" else 1.0
        self._offdiag = 1.0 - np.eye(self.n_atoms)
        self._eye = np.eye(self.n_atoms)
        # suggested start: a random packing (seeded, reproducible; see random_packing)
        self.seed = int(seed)
        self.x0 = self.random_starts(1, self.seed)[0]
        self.bounds = None
        table = LJ_MINIMA if kind == "lj" else (MORSE6_MINIMA if self.rho == 6.0 else {})
        if self.n_atoms <= 4 and self.n_atoms not in table:  # any ρ: all pairs at r = 1
            table = {self.n_atoms: -float(self.n_atoms * (self.n_atoms - 1) // 2)}
        if self.n_atoms in table:
            loc = None
            if self.n_atoms <= 4:
                loc = seed_structure(self.n_atoms, kind).ravel()
            elif self.rho in (None, 6.0):
                loc = _stored_minimum(kind, self.n_atoms)
            src = (
                "CCD, Wales & Doye 1997 (SCIPY LennardJones.minima / transcriptions)"
                if kind == "lj"
                else "CCD Morse table, Doye & Wales 1997 (public transcription)"
                if self.rho == 6.0
                else "exact: all pairs at the pair minimum r = 1"
            )
            self.minima = (KnownMinimum(loc, table[self.n_atoms], src),)
        else:
            self.minima = ()

    def random_starts(self, n: int, seed: int, *, member: int = 0) -> np.ndarray:
        """``n`` random starts, shape ``(n, 3N)``: :func:`random_packing` at this pair distance.

        Start ``k`` is member ``member + k`` of ``seed`` (independent across seeds).
        """
        return random_packing(self.n_atoms, n, seed, pair_distance=self.pair_distance,
                              member=member).reshape(n, self.dim)

    def perturb(self, rng: np.random.Generator, x: np.ndarray, size: float) -> np.ndarray:
        """A basin-hopping move of one configuration (NumPy float64, shape ``(3N,)``): all
        atoms by up to ``size``, or a least-coordinated atom to the surface, half of the time
        each; see :func:`physopt_ref.problems._cluster_moves.hop`. Costs no evaluation."""
        return hop(rng, x, size, self.n_atoms, self.pair_distance)

    def crossover(self, rng: np.random.Generator, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Deaven & Ho's cut-and-splice child of two configurations (shape ``(3N,)``): a top
        part of ``x`` joined to a bottom part of ``y`` across a random plane; see
        :func:`physopt_ref.problems._cluster_moves.cut_and_splice`. Costs no evaluation."""
        return cut_and_splice(rng, x, y, self.n_atoms, self.pair_distance)

    def _value_and_grad(self, xp: Any, x: Any) -> tuple[Any, Any]:
        n = self.n_atoms
        batch = tuple(x.shape[:-1])
        pos = xp.reshape(x, (*batch, n, 3))
        d = xp.expand_dims(pos, axis=-2) - xp.expand_dims(pos, axis=-3)  # x_i − x_j
        r2 = xp.sum(d * d, axis=-1) + asarray_like(self._eye, x)  # 1 on the diagonal
        mask = asarray_like(self._offdiag, x)
        if self.kind == "lj":
            inv2 = 1.0 / r2
            inv6 = inv2 * inv2 * inv2
            e = (4.0 * (inv6 * inv6 - inv6)) * mask
            coef = (24.0 * inv2 * (inv6 - 2.0 * inv6 * inv6)) * mask
        else:
            rho = self.rho
            assert rho is not None  # a Morse cluster has its ρ
            r = xp.sqrt(r2)
            ex = xp.exp(rho * (1.0 - r))
            e = (ex * (ex - 2.0)) * mask
            coef = (-2.0 * rho * ex * (ex - 1.0) / r) * mask
        f = 0.5 * xp.sum(xp.reshape(e, (*batch, n * n)), axis=-1)
        g = xp.sum(xp.expand_dims(coef, axis=-1) * d, axis=-2)
        return f, xp.reshape(g, (*batch, 3 * n))


def lennard_jones(n_atoms: int = 13, *, seed: int = 0) -> Cluster:
    """Lennard-Jones cluster, ε = σ = 1; see :class:`Cluster` (start: seeded random cloud)."""
    return Cluster(n_atoms, "lj", seed=seed)


def morse(n_atoms: int = 13, rho: float = 6.0, *, seed: int = 0) -> Cluster:
    """Morse cluster, ε = r_e = 1, range ρ (default 6, the CCD table); see :class:`Cluster`."""
    return Cluster(n_atoms, "morse", rho, seed=seed)


# --------------------------------------------------------------------------------------------
# structures
# --------------------------------------------------------------------------------------------
#: Stream of the start draws (apart from the CLI's box / jitter starts, stream 101).
_PACKING_STREAM = 202


def random_packing(
    n_atoms: int,
    n: int,
    seed: int,
    *,
    pair_distance: float = 1.0,
    min_distance: float = 0.9,
    density: float = 3.0 / (2.0 * math.pi),
    member: int = 0,
) -> np.ndarray:
    r"""``n`` random cluster starts, shape ``(n, N, 3)``: no two atoms closer than a set distance.

    Random sequential addition in a sphere: candidate positions uniform in a ball of radius
    :math:`R = a\,(3N/(4\pi
ho))^{1/3}` (``a`` = ``pair_distance``, ``ρ`` = ``density``
    atoms per :math:`a^3`; the default :math:`3/(2\pi) pprox 0.48` is a third of the
    close-packed :math:`\sqrt 2`, :math:`R = a (N/2)^{1/3}`) are taken in order and kept when
    they lie at least ``min_distance · a`` from every atom kept so far, until there are ``N``.
    At the default 0.9a every pair of a Lennard-Jones start has :math:`r \ge 1.01\sigma`, so
    every pair energy is below 0 and the start's energy is finite and negative (a Morse pair
    at :math:`r \ge 0.9 r_e` is at most :math:`e^{0.6}(e^{0.6}-2) < 0` too); uniform points in a
    box or jitter around one cloud overlap atoms (issue 23: LJ38 start energies up to 2.5e5).
    The excluded volume is :math:`
ho\pi(0.9a)^3/6 pprox 0.18` of the ball, below random
    sequential addition's jamming fraction 0.38, so the addition always completes.

    The candidates of start ``k`` are Philox draws keyed by (``seed``, member ``member + k``)
    (:func:`physopt_ref.backends.host_uniform`, stream 202, counter = batch of candidates),
    so the starts are the same on every machine and different seeds share none. Each start is
    centred at its centroid.
    """
    if int(n_atoms) != n_atoms or n_atoms < 1:
        raise ValueError(f"n_atoms must be an integer >= 1, got {n_atoms}")
    if not (0.0 < min_distance and 0.0 < density and 0.0 < pair_distance):
        raise ValueError("pair_distance, min_distance and density must be > 0")
    fraction = density * math.pi * min_distance**3 / 6.0
    if fraction > 0.3:
        raise ValueError(
            f"min_distance {min_distance} at density {density} excludes {fraction:.2f} of the "
            "volume; random sequential addition jams near 0.38: lower one of them"
        )
    radius = pair_distance * (3.0 * n_atoms / (4.0 * math.pi * density)) ** (1.0 / 3.0)
    d2 = (min_distance * pair_distance) ** 2
    batch = 8 * n_atoms
    out = np.empty((n, n_atoms, 3))
    for k in range(n):
        pts: list[np.ndarray] = []
        counter = 0
        while len(pts) < n_atoms:
            cand = radius * (2.0 * host_uniform(seed, counter, (batch, 3), stream=_PACKING_STREAM,
                                                member=member + k) - 1.0)
            counter += 1
            for c in cand[np.sum(cand * cand, axis=1) <= radius * radius]:
                if not pts or np.min(np.sum((np.asarray(pts) - c) ** 2, axis=1)) >= d2:
                    pts.append(c)
                    if len(pts) == n_atoms:
                        break
        x = np.asarray(pts)
        out[k] = x - x.mean(axis=0)
    return out


def _icosahedron_vertices() -> np.ndarray:
    """The 12 vertices of a regular icosahedron with edge length 1."""
    phi = (1.0 + math.sqrt(5.0)) / 2.0
    v = []
    for a in (-1.0, 1.0):
        for b in (-phi, phi):
            v += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    return np.array(v) / 2.0


def truncated_octahedron38() -> np.ndarray:
    """The 38-atom fcc truncated octahedron (nearest-neighbour distance 1).

    The fcc sites ``(i, j, k)`` with ``i + j + k`` odd and ``i² + j² + k² ≤ 5`` around an
    octahedral hole (spec ``problems.md`` §3.2), scaled by 1/√2; the LJ38 global minimum.
    """
    pts = [
        (i, j, k)
        for i in range(-2, 3)
        for j in range(-2, 3)
        for k in range(-2, 3)
        if (i + j + k) % 2 == 1 and i * i + j * j + k * k <= 5
    ]
    return np.array(pts, dtype=np.float64) / math.sqrt(2.0)


def seed_structure(n_atoms: int, kind: str = "lj") -> np.ndarray:
    """An ideal structure, shape ``(N, 3)``, to be relaxed into the known minimum.

    Exact minima for N = 2 (dimer), 3 (equilateral triangle), 4 (regular tetrahedron) with
    the pair distance at the pair minimum (``2^{1/6}`` for LJ, 1 for Morse). Ideal polyhedra
    (unit nearest-neighbour distance scaled to the pair distance) for N = 5 (trigonal
    bipyramid), 6 (octahedron), 7 (pentagonal bipyramid), 13 (centred icosahedron),
    19 (double icosahedron) and 38 (fcc truncated octahedron). ``NotImplementedError`` for
    other N.
    """
    a = _LJ_PAIR_R if kind == "lj" else 1.0
    s3 = math.sqrt(3.0)
    if n_atoms == 2:
        pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    elif n_atoms == 3:
        pts = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, s3 / 2, 0.0]])
    elif n_atoms == 4:
        pts = np.array(
            [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.5, s3 / 2, 0.0],
             [0.5, s3 / 6, math.sqrt(2.0 / 3.0)]]
        )  # fmt: skip
    elif n_atoms == 5:
        tri = np.array([[1.0, 0.0, 0.0], [-0.5, s3 / 2, 0.0], [-0.5, -s3 / 2, 0.0]]) / s3
        pts = np.vstack([tri, [[0, 0, math.sqrt(2.0 / 3.0)], [0, 0, -math.sqrt(2.0 / 3.0)]]])
    elif n_atoms == 6:
        pts = np.vstack([np.eye(3), -np.eye(3)]) / math.sqrt(2.0)
    elif n_atoms == 7:
        ang = 2.0 * math.pi * np.arange(5) / 5
        rad = 1.0 / (2.0 * math.sin(math.pi / 5))
        ring = np.stack([rad * np.cos(ang), rad * np.sin(ang), np.zeros(5)], axis=1)
        z = math.sqrt(max(1.0 - rad * rad, 0.0))
        pts = np.vstack([ring, [[0, 0, z], [0, 0, -z]]])
    elif n_atoms == 13:
        v = _icosahedron_vertices()
        pts = np.vstack([np.zeros((1, 3)), v / np.linalg.norm(v[0])])
    elif n_atoms == 19:
        # two interpenetrating centred icosahedra (D5h): the centre of the second is the top
        # apex of the first; axis atoms at z = −1, 0, 1, 2 and three pentagonal rings of
        # radius 2/√5 at z = −½, ½, 3⁄2, alternately staggered by 36° (circumradius 1)
        ang = 2.0 * math.pi * np.arange(5) / 5
        rad = 2.0 / math.sqrt(5.0)
        rings = [
            np.stack([rad * np.cos(ang + off), rad * np.sin(ang + off), np.full(5, z)], axis=1)
            for z, off in ((-0.5, math.pi / 5), (0.5, 0.0), (1.5, math.pi / 5))
        ]
        axis = np.array([[0.0, 0.0, z] for z in (-1.0, 0.0, 1.0, 2.0)])
        pts = np.vstack([axis, *rings]) / (2.0 * rad * math.sin(math.pi / 5))
    elif n_atoms == 38:
        pts = truncated_octahedron38()
    else:
        raise NotImplementedError(f"no seed structure for N = {n_atoms}")
    pts = np.asarray(pts, dtype=np.float64)
    return a * (pts - pts.mean(axis=0))


def relax(problem: Problem, x: Any, *, gtol: float = 1e-10, maxiter: int = 10000) -> np.ndarray:
    """Local minimisation from ``x`` with SciPy's L-BFGS on ``problem``'s value and gradient.

    Host helper (NumPy float64, one point) for tests and for making reference structures.
    """
    from scipy.optimize import minimize

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = problem.value_and_grad(v)
        return float(f), np.asarray(g, dtype=np.float64)

    res = minimize(
        fun,
        np.asarray(x, dtype=np.float64).ravel(),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": gtol, "ftol": 1e-15, "maxiter": maxiter, "maxcor": 30},
    )
    return res.x


# --------------------------------------------------------------------------------------------
# stored minimum structures (regenerate with regenerate_cluster_minima)
# --------------------------------------------------------------------------------------------
_DATA = Path(__file__).parent / "data" / "cluster_minima.npz"
_STORE: dict[str, np.ndarray] | None = None


def _stored_minimum(kind: str, n_atoms: int) -> np.ndarray | None:
    global _STORE
    if _STORE is None:
        _STORE = {}
        if _DATA.exists():
            with np.load(_DATA) as data:
                _STORE = {k: np.array(data[k], dtype=np.float64) for k in data.files}
    loc = _STORE.get(f"{kind}_{n_atoms}")
    return None if loc is None else loc.ravel().copy()


def regenerate_cluster_minima(
    path: str | Path | None = None,
    *,
    sizes: tuple[int, ...] = (*range(5, 21), 38),
    niter: int = 150,
    max_tries: int = 40,
    seed: int = 0,
) -> dict[str, float]:
    """Recompute the stored minimum structures by basin-hopping (Wales & Doye 1997 style).

    For each potential (LJ; Morse ρ = 6) and N in ``sizes``: start from the N−1 structure with
    one atom added on its surface (N = 13, 19, 38 from :func:`seed_structure`), run SciPy's
    ``basinhopping`` (``niter`` steps, T = 0.8, step 0.36·pair distance, L-BFGS local
    minimiser on this module's energy and gradient), polish with :func:`relax`, and retry
    (up to ``max_tries``; one try for N = 38, which reaches the LJ38 truncated octahedron but
    not the Morse M38 minimum) until the energy matches the CCD table to 1e-6 (2e-6 for Morse
    N = 6). Only structures that match are written (``path``, default
    ``problems/data/cluster_minima.npz``, keys ``"lj_N"`` / ``"morse_N"``, arrays (N, 3)).
    Returns ``{key: energy − table}`` for every key tried (mismatches included). Takes
    several minutes.
    """
    from scipy.optimize import basinhopping

    rng = np.random.default_rng(seed)
    found: dict[str, Any] = {}  # savez(**found): numpy's stub types the keywords as bool
    report: dict[str, float] = {}
    for kind in ("lj", "morse"):
        table = LJ_MINIMA if kind == "lj" else MORSE6_MINIMA
        a = _LJ_PAIR_R if kind == "lj" else 1.0
        prev = seed_structure(4, kind)
        for n in sizes:
            p = Cluster(n, kind)
            tol = 2e-6 if (kind, n) == ("morse", 6) else 1e-6

            def fun(v: np.ndarray, p: Cluster = p) -> tuple[float, np.ndarray]:
                f, g = p.value_and_grad(v)
                return float(f), g

            best: tuple[float, np.ndarray] | None = None
            for _ in range(1 if n == 38 else max_tries):
                if n in (13, 19, 38) or prev.shape[0] != n - 1:
                    try:
                        x0 = seed_structure(n, kind)
                    except NotImplementedError:
                        x0 = p.x0.reshape(n, 3)
                else:
                    c = prev - prev.mean(axis=0)
                    d = rng.standard_normal(3)
                    d /= np.linalg.norm(d)
                    x0 = np.vstack([c, (np.max(c @ d) + a) * d])
                res = basinhopping(
                    fun, x0.ravel(), niter=niter, T=0.8, stepsize=0.36 * a,
                    minimizer_kwargs={"jac": True, "method": "L-BFGS-B",
                                      "options": {"gtol": 1e-8}},
                    seed=int(rng.integers(2**31)),
                )  # fmt: skip
                x = relax(p, res.x)
                e = float(p.value(x))
                if best is None or e < best[0]:
                    best = (e, x.reshape(n, 3))
                if abs(best[0] - table[n]) <= tol:
                    break
            assert best is not None
            report[f"{kind}_{n}"] = best[0] - table[n]
            if abs(best[0] - table[n]) <= tol:
                found[f"{kind}_{n}"] = best[1] - best[1].mean(axis=0)
            prev = best[1]
    np.savez_compressed(_DATA if path is None else Path(path), **found)
    return report

r"""Global-search moves of atomic clusters: the basin-hopping hop and the cut-and-splice crossover.

Pure geometry on one configuration (NumPy float64, flattened ``(3N,)``): a move costs no
evaluation of the energy. :class:`physopt_ref.problems.Cluster` offers them as its
``perturb`` and ``crossover`` methods, which :func:`physopt_ref.search` uses.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cut_and_splice", "hop", "splice"]

#: Neighbour shell (pairs closer than 1.3 pair distances count as neighbours).
_SHELL = 1.3
#: Closest approach allowed when an atom is placed or two halves are joined (pair distances).
_CLOSEST = 0.85


def _centred(x: np.ndarray, n_atoms: int) -> np.ndarray:
    pos = np.asarray(x, dtype=np.float64).reshape(n_atoms, 3)
    return pos - pos.mean(axis=0)


def hop(rng: np.random.Generator, x: np.ndarray, size: float, n_atoms: int,
        pair_distance: float) -> np.ndarray:
    r"""A basin-hopping move of one configuration.

    With probability 1/2 every atom moves by a uniform displacement in :math:`[-s, s]^3`
    (SciPy's ``basinhopping`` step, ``s = size``); otherwise one of the three atoms with the
    fewest neighbours (pairs closer than :math:`1.3a`, ``a`` the pair distance) moves to a
    hollow site of the cluster's surface: of 32 random directions at the radii :math:`R`,
    :math:`R + 0.4a` and :math:`R + 0.8a` (``R`` the largest radius of the other atoms from
    the centroid), the point with the most neighbours within :math:`1.3a` among those at least
    :math:`0.85a` from every atom (if none is, the farthest from them). The surface move is the
    "move the worst-bound atom to the surface" move of cluster basin hopping (Wales & Doye
    1997; Northby's lattice search does the same on a lattice).
    """
    pos = _centred(x, n_atoms)
    if n_atoms < 3 or rng.random() < 0.5:
        return (pos + rng.uniform(-size, size, size=pos.shape)).ravel()
    a = pair_distance
    d2 = np.sum((pos[:, None, :] - pos[None, :, :]) ** 2, axis=-1)
    neighbours = np.sum(d2 < (_SHELL * a) ** 2, axis=1) - 1
    k = int(rng.choice(np.argsort(neighbours, kind="stable")[:3]))
    others = np.delete(pos, k, axis=0)
    u = rng.standard_normal((32, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    radius = np.sqrt(np.max(np.sum(others * others, axis=1)))
    sites = np.concatenate([(radius + c * a) * u for c in (0.0, 0.4, 0.8)])
    s2 = np.sum((sites[:, None, :] - others[None, :, :]) ** 2, axis=-1)
    nearest = np.min(s2, axis=1)
    score = np.where(nearest >= (_CLOSEST * a) ** 2,
                     np.sum(s2 < (_SHELL * a) ** 2, axis=1), -1.0 / (1.0 + nearest))
    pos[k] = sites[int(np.argmax(score))]
    return pos.ravel()


def _rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random rotation matrix (QR of a Gaussian matrix, signs fixed, det +1)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def cut_and_splice(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, n_atoms: int,
                   pair_distance: float) -> np.ndarray:
    r"""Deaven & Ho's cut-and-splice crossover of two configurations (one child).

    Both parents are centred at their centroids and turned by independent random rotations;
    a plane through the centre, normal to a random unit vector :math:`\hat n`, cuts them. The
    child takes the :math:`k` atoms of ``x`` highest along :math:`\hat n`, :math:`k` drawn
    uniformly from :math:`1 … N-1`, and the :math:`N-k` atoms of ``y`` lowest along it
    (D. M. Deaven & K. M. Ho, Phys. Rev. Lett. 75, 288 (1995): the mating operator of their
    genetic algorithm, which found the LJ38 truncated octahedron; the local minimisation of
    the child is the caller's). Where the two halves come closer than :math:`0.85a` (``a``
    the pair distance), the lower half moves away along :math:`-\hat n` until they do not, so
    that the child's energy is finite for the local minimiser.
    """
    if n_atoms < 2:
        return _centred(x, n_atoms).ravel()
    top = _centred(x, n_atoms) @ _rotation(rng).T
    bottom = _centred(y, n_atoms) @ _rotation(rng).T
    normal = rng.standard_normal(3)
    normal /= np.linalg.norm(normal)
    child = splice(top, bottom, normal, int(rng.integers(1, n_atoms)), pair_distance)
    return (child - child.mean(axis=0)).ravel()


def splice(top: np.ndarray, bottom: np.ndarray, normal: np.ndarray, k: int,
           pair_distance: float) -> np.ndarray:
    r"""The child of :func:`cut_and_splice` for given (turned) parents, shape ``(N, 3)``: the
    ``k`` atoms of ``top`` highest along the unit vector ``normal``, unmoved, then the
    :math:`N-k` atoms of ``bottom`` lowest along it, moved along ``normal`` so that their
    highest is level with the other part's lowest, and further along :math:`-\hat n` until no
    pair across the cut is closer than :math:`0.85a`."""
    n_atoms = top.shape[0]
    upper = top[np.argsort(-(top @ normal), kind="stable")[:k]]
    lower = bottom[np.argsort(bottom @ normal, kind="stable")[:n_atoms - k]]
    lower = lower + (np.min(upper @ normal) - np.max(lower @ normal)) * normal
    closest = _CLOSEST * pair_distance
    for _ in range(64):
        d = np.sqrt(np.min(np.sum((upper[:, None, :] - lower[None, :, :]) ** 2, axis=-1)))
        if d >= closest:
            break
        lower = lower - (closest - d + 1e-3 * pair_distance) * normal
    return np.concatenate([upper, lower])

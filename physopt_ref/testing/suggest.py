r"""Physics checks proposed for an optimizer from its hyperparameter names and its behaviour.

When :func:`~physopt_ref.testing.verify` is given no ``physics``, :func:`suggest_physics`
chooses checks and says why:

- **moment estimates** (``b1``, ``beta1`` with or without ``b2``, ``beta2``, or torch's
  ``betas``): the bias correction (Kingma & Ba 2015, Sec. 3): under a constant gradient every
  step equals the first;
- **momentum** (``momentum`` > 0): the two first steps from rest under a constant gradient
  :math:`g` are measured. A first step :math:`-\eta g` followed by longer ones is a heavy
  ball (the classic form and torch's / optax's trace form alike): its stability threshold
  :math:`\eta k < 2(1+\beta)` is checked (Nesterov's, :math:`2(1+\beta)/(1+2\beta)`, with
  ``nesterov=True``). Steps that stay equal are an average of the gradients with a bias
  correction, and a first step other than :math:`-\eta g` an average whose correction is
  missing or wrong: the bias-correction check runs;
- **a plain step size** (``lr`` or ``learning_rate``, no momentum, no moments) whose steps are
  :math:`-\eta g`: gradient descent's threshold :math:`\eta k < 2`;
- **a loss-taking step** (``needs_loss``, or a ``loss`` argument without a default) with a
  ``rescale`` switch: the energy checks (the ECDSep Hamiltonian with ``eta``, else BBI's
  Born-Infeld one); without the switch the energy checks cannot run, and the report says so.

An optimizer object (no factory to rebuild it with other settings) gets only the bias
correction. A nonzero ``weight_decay`` is set to 0 for the suggested checks (decay makes the
steps depend on the parameters), and the notes say so. Give ``physics=`` (``--physics``) to
choose instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from physopt_ref.backends import to_numpy
from physopt_ref.testing.probe import accommodate, probe
from physopt_ref.testing.properties import (
    Property,
    bias_correction,
    physics_preset,
    stability_bound,
)
from physopt_ref.testing.subject import Subject

__all__ = ["first_steps", "suggest_physics"]

_MOMENTS = (("b1", "b2"), ("beta1", "beta2"), ("betas",), ("b1",), ("beta1",))
_G = np.array([1.0, -0.5])


def _lr_name(hp: Mapping[str, Any]) -> str | None:
    return next((n for n in ("lr", "learning_rate") if isinstance(hp.get(n), int | float)
                 and not isinstance(hp.get(n), bool)), None)


def first_steps(subject: Subject, steps: int = 2) -> list[np.ndarray]:
    """The first ``steps`` steps from rest under the constant gradient ``[1, -0.5]``."""
    opt = subject.build()
    x = np.zeros(2)
    state = opt.init(x)
    out = []
    for _ in range(steps):
        new, state = opt.step(x, _G.copy(), state, loss=np.asarray(1.0))
        new = np.asarray(to_numpy(new), dtype=np.float64)
        out.append(new - x)
        x = new
    return out


def _buildable(subject: Subject, hp: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters the checks can set: those the factory takes by name."""
    target = subject.factory if subject.native is None else subject.native
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return hp
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return hp
    names = {p.name for p in params if p.kind is not p.POSITIONAL_ONLY}
    return {k: v for k, v in hp.items() if k in names}


def _can_vary(subject: Subject, hp: Mapping[str, Any]) -> bool:
    """The subject can be rebuilt with other settings (a factory, not a fixed object)."""
    if not hp:
        return True
    name, value = next(iter(hp.items()))
    try:
        subject.build(**{name: value})
    except TypeError:
        return False
    return True


def _without_decay(prop: Property) -> Property:
    """``prop`` checked with ``weight_decay=0``."""
    check = prop.check
    return replace(prop, check=lambda s, ex: check(s.with_hyperparameters(weight_decay=0.0), ex))


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.allclose(a, b, rtol=1e-4, atol=0.0))


def _takes_loss(opt: Any) -> bool:
    if getattr(opt, "needs_loss", False):
        return True
    try:
        p = inspect.signature(opt.step).parameters.get("loss")
    except (TypeError, ValueError):
        return False
    return p is not None and p.default is inspect.Parameter.empty


def suggest_physics(subject: Subject) -> tuple[list[Property], list[str]]:
    """The physics properties proposed for ``subject`` and one line per choice saying why.

    A subject not yet probed is probed first (:func:`~physopt_ref.testing.probe.probe`), so
    that its first steps are taken the way it accepts them.
    """
    if subject.framework == "physopt" and subject.accepts is None:
        subject = accommodate(subject, probe(subject))
    hp = _buildable(subject, subject.resolved_hyperparameters())
    props: list[Property] = []
    why: list[str] = []
    moments = next((names for names in _MOMENTS if all(n in hp for n in names)), None)
    if moments is not None:
        props.append(bias_correction())
        why.append(f"hyperparameters {'/'.join(moments)}: moment estimates, so the bias "
                   "correction (every step under a constant gradient equals the first)")
    if not _can_vary(subject, hp):
        why.append("an optimizer object, not a factory: the checks that rebuild it with other "
                   "settings (stability thresholds, energy) are not suggested; pass a Subject "
                   "with the factory")
        return props, why
    lr = _lr_name(hp)
    momentum = hp.get("momentum")
    beta = float(momentum) if isinstance(momentum, int | float) and not isinstance(
        momentum, bool) else 0.0
    decay = hp.get("weight_decay")
    decayed = isinstance(decay, int | float) and decay != 0
    try:
        s = first_steps(subject.with_hyperparameters(weight_decay=0.0) if decayed else subject
                        ) if lr is not None else None
    except Exception as exc:  # the optimizer's own failure is reported by the checks
        s = None
        why.append(f"the first steps could not be measured ({type(exc).__name__}: {exc}); "
                   "no behaviour-based check chosen")
    if s is not None and moments is None and lr is not None:
        eta = float(hp[lr])
        if beta > 0.0:
            if hp.get("nesterov") is True:
                props.append(stability_bound("nesterov", lr=lr))
                why.append(f"momentum={beta:g} with nesterov=True: Nesterov's stability "
                           "threshold")
            elif _close(s[0], -eta * _G) and not _close(s[1], s[0]):
                props.append(stability_bound("heavy_ball", lr=lr))
                why.append(f"momentum={beta:g}, a first step -{lr}*g and growing steps under a "
                           "constant gradient: a heavy ball, so its stability threshold "
                           "2(1+momentum)/k")
            else:
                props.append(bias_correction())
                why.append(f"momentum={beta:g} and steps under a constant gradient that do not "
                           "start at -lr*g and grow: an average of the gradients, so the bias "
                           "correction (every step equals the first)")
        elif _close(s[0], -eta * _G) and _close(s[1], -eta * _G):
            props.append(stability_bound("gd", lr=lr))
            why.append(f"steps -{lr}*g with no momentum: gradient descent, so its stability "
                       "threshold 2/k")
    opt = subject.build()
    if _takes_loss(opt):
        if "rescale" in hp:
            preset = "energy=ecdsep" if "eta" in hp else "energy=bbi"
            props += physics_preset(preset)
            why.append(f"the step takes the loss and has a rescale switch: {preset}")
        else:
            why.append("the step takes the loss, but the energy checks need a 'rescale' "
                       "switch: not run (give --physics energy=...)")
    if props and decayed:
        props = [_without_decay(p) for p in props]
        why.append(f"weight_decay={decay:g} set to 0 for these checks (decay makes the steps "
                   "depend on the parameters: it shifts the thresholds and the steps under a "
                   "constant gradient)")
    if not props:
        why.append("no physics check suggested by the hyperparameter names "
                   f"({', '.join(sorted(hp)) or 'none'}) or the first steps; give --physics")
    return props, why

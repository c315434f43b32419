r"""The Dyna paper's experiment in small: logistic regression on scikit-learn's digits.

Han (2018), Sec. 5 and Table 1, trains multinomial logistic regression on MNIST (784 inputs,
``lr = 2/784``, L2 1.6e-5, β₁ = 0.9, 96 minibatches per epoch, 50 epochs) with Dyna at constant
ζ = 1 and ζ = 0.5 and with the Eq. 22 ramp ``1/(2ζ) = 1 − 0.5 min(1, (t/T)²)``,
``T = 10 × n_batches``, against Adam at lr 1e-3, and reports train / validation / test accuracy.

Here the data are scikit-learn's bundled 8×8 digits (1797 images, 64 inputs, so Dyna's
``lr = 2/64``; the "digits" extra installs scikit-learn; no download), pixel values scaled to
[0, 1], split 1197 / 300 / 300 (train / validation / test) with a seeded shuffle; 96 minibatches
per epoch, L2 1.6e-5, zero initial weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from physopt_ref.backends import get_namespace, to_numpy
from physopt_ref.core.registry import get_optimizer
from physopt_ref.optimizers.dyna import damping_ramp

__all__ = ["PAPER_TABLE_1", "DigitsResult", "load_digits_split", "run_digits"]

N_BATCHES = 96  # Han 2018, Sec. 5
L2 = 0.000016  # ibid.
DYNA_FAN_IN = 64  # Sec. 5: learning_rate = 2/n with n the number of inputs (784 there)
ADAM_LR = 1e-3  # Sec. 5 / Table 1
RAMP_EPOCHS = 10  # Eq. 22: T = 10 epochs of minibatches


@dataclass(frozen=True)
class DigitsResult:
    """One line of the Table 1 analogue."""

    label: str
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    final_loss: float
    hyperparameters: str


def load_digits_split(seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_val, y_val, x_test, y_test)`` as float64 / int64 NumPy arrays.

    Raises ImportError with the install command when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits experiment needs scikit-learn: pip install 'physopt_ref[digits]'"
        ) from exc
    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    x, y = x[order], y[order]
    n_test = n_val = 300
    n_train = len(y) - n_val - n_test
    return (x[:n_train], y[:n_train], x[n_train:n_train + n_val], y[n_train:n_train + n_val],
            x[n_train + n_val:], y[n_train + n_val:])


def _loss_and_grads(xp: Any, params: dict[str, Any], x: Any, onehot: Any) -> tuple[Any, dict]:
    """Mean softmax cross-entropy + ½·L2·|W|², and its gradients (Array API only)."""
    w, b = params["W"], params["b"]
    logits = xp.matmul(x, w) + b
    logits = logits - xp.max(logits, axis=-1, keepdims=True)
    e = xp.exp(logits)
    z = xp.sum(e, axis=-1, keepdims=True)
    p = e / z
    n = x.shape[0]
    loss = -xp.sum(onehot * (logits - xp.log(z))) / n + 0.5 * L2 * xp.sum(w * w)
    d = (p - onehot) / n
    return loss, {"W": xp.matmul(xp.permute_dims(x, (1, 0)), d) + L2 * w, "b": xp.sum(d, axis=0)}


def _accuracy(xp: Any, params: dict[str, Any], x: Any, y: np.ndarray) -> float:
    logits = xp.matmul(x, params["W"]) + params["b"]
    pred = np.argmax(to_numpy(logits), axis=-1)
    return float(np.mean(pred == y))


def _dyna_settings() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, optimizer, hyperparameters) of the three Dyna rows of Table 1.

    α = 2γ/n with γ = 1 and n = 64 for the weights and the bias alike (Sec. 5: one
    ``lr = 2/784`` for the whole model), β = 0.9, and ζ = 1, ζ = 0.5, or the Eq. 22 ramp over
    10 epochs.
    """
    base: dict[str, Any] = {"gamma": 1.0, "fan_in": DYNA_FAN_IN, "beta": 0.9}
    return [
        ("Dyna", "dyna", {**base, "zeta": 1.0}),
        ("Dyna", "dyna", {**base, "zeta": 0.5}),
        ("Dyna", "dyna", {**base, "zeta": damping_ramp(RAMP_EPOCHS * N_BATCHES)}),
    ]


def run_digits(
    *,
    epochs: int = 50,
    seed: int = 0,
    xp: Any = None,
    include: tuple[str, ...] = ("dyna", "adam"),
) -> list[DigitsResult]:
    """Train logistic regression on the digits with each optimizer; return Table 1's rows.

    Parameters
    ----------
    epochs : int
        Epochs of 96 minibatches (the paper trains 50).
    seed : int
        Seed of the split and of the minibatch order (the same for every optimizer).
    xp : namespace, optional
        The backend (NumPy by default).
    include : tuple of str
        Which families to run (``"dyna"``, ``"adam"``).
    """
    if xp is None:
        xp = get_namespace("numpy")
    x_tr, y_tr, x_va, y_va, x_te, y_te = load_digits_split(seed)
    configs: list[tuple[str, str, dict[str, Any]]] = []
    if "dyna" in include:
        configs += _dyna_settings()
    if "adam" in include:
        configs.append(("Adam", "adam", {"lr": ADAM_LR}))

    X = {k: xp.asarray(v) for k, v in (("tr", x_tr), ("va", x_va), ("te", x_te))}
    onehot = xp.asarray(np.eye(10)[y_tr])
    batches = np.array_split(np.arange(len(y_tr)), N_BATCHES)
    rng = np.random.default_rng(seed + 1)
    orders = [rng.permutation(len(y_tr)) for _ in range(epochs)]

    results = []
    for label, name, hp in configs:
        opt = get_optimizer(name, **hp)
        params = {"W": xp.zeros((64, 10), dtype=xp.float64), "b": xp.zeros((10,), dtype=xp.float64)}
        state = opt.init(params)
        loss = math.nan
        for order in orders:
            x_ep, oh_ep = X["tr"], onehot
            for idx in batches:
                sel = xp.asarray(order[idx])
                xb = xp.take(x_ep, sel, axis=0)
                yb = xp.take(oh_ep, sel, axis=0)
                loss, grads = _loss_and_grads(xp, params, xb, yb)
                params, state = opt.step(params, grads, state, loss=loss)
        full_loss, _ = _loss_and_grads(xp, params, X["tr"], onehot)
        desc = ", ".join(f"{k}={_describe(v)}" for k, v in hp.items())
        results.append(DigitsResult(
            label=label,
            train_accuracy=_accuracy(xp, params, X["tr"], y_tr),
            val_accuracy=_accuracy(xp, params, X["va"], y_va),
            test_accuracy=_accuracy(xp, params, X["te"], y_te),
            final_loss=float(np.asarray(full_loss)) if not hasattr(full_loss, "item")
            else float(full_loss.item()),
            hyperparameters=desc,
        ))
    return results


def _describe(v: Any) -> str:
    if callable(v):
        return f"ramp 0.5→1 over {RAMP_EPOCHS} epochs (Eq. 22)"
    if isinstance(v, float):
        return f"{v:.5g}"
    return str(v)


#: The paper's Table 1 (MNIST, 50 epochs), for the printout.
PAPER_TABLE_1 = (
    ("Dyna", 0.9428, 0.9368, 0.9304, "constant ζ = 1.0, l.r. = 0.00255"),
    ("Dyna", 0.9448, 0.9349, 0.9306, "constant ζ = 0.5, l.r. = 0.00255"),
    ("Dyna", 0.9437, 0.9349, 0.9307, "varying ζ = 0.5 → 1.0, l.r. = 0.00255"),
    ("Adam", 0.9435, 0.9340, 0.9286, "constant l.r. = 0.001"),
)

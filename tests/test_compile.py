"""Compilation is part of the contract: every registered step under jit, scan and torch.compile.

For every optimizer of :data:`physopt_ref.REGISTRY`, on the contract quadratic of
``test_contract``:

* ``jax.jit(opt.step)`` equals the eager NumPy run step by step, in float64 (x64 on) and in
  float32 with JAX's default 32-bit mode (x64 off, where the random draws use uint32 words);
* ``jax.lax.scan`` over 200 steps equals 200 eager NumPy steps (the registry's ``long_run``
  settings keep the trajectory reproducible to rounding);
* ``torch.compile(opt.step, fullgraph=True)`` (inductor, the C++ CPU backend) compiles once and
  runs 20 steps without recompiling, equal to the eager torch run. ``fullgraph=True`` also makes
  any host synchronisation inside a step (``.item()``, ``bool()`` on a tensor) an error, as
  ``jax.jit`` does for tracers: together they are the host-sync check.

The checks are the kit's (:mod:`physopt_ref.testing.compile`); they skip, with the reason,
where JAX or torch is not installed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from physopt_ref import registered_names
from physopt_ref import testing as kit

from .test_contract import subject

NAMES = registered_names()

PRECISIONS = [pytest.param(np.float64, True, id="float64-x64"),
              pytest.param(np.float32, False, id="float32-no-x64")]


@pytest.mark.parametrize(("dtype", "x64"), PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
def test_jax_jit_step_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    kit.check_jax_jit(subject(name), dtype, x64, steps=12).raise_if_failed()


@pytest.mark.parametrize(("dtype", "x64"), PRECISIONS)
@pytest.mark.parametrize("name", NAMES)
def test_jax_scan_200_steps_equals_eager_numpy(name: str, dtype: Any, x64: bool) -> None:
    kit.check_jax_scan(subject(name), dtype, x64, steps=200).raise_if_failed()


@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_compiles_once(name: str) -> None:
    kit.check_torch_compile(subject(name), steps=20).raise_if_failed()

"""The numerical fingerprint of a machine: what decides the last bits of ``compare``'s numbers.

Two machines give the same table digit for digit when NumPy dispatches its elementwise
transcendental functions (``exp``, ``log``, ``sin``, ``cos``) to the same SIMD target and the
BLAS/LAPACK libraries run the same kernel: those are the operations whose last bits differ
between builds of the same library (vectorised ``exp``/``sin``/``cos`` are not correctly
rounded, and a BLAS kernel orders its sums by its register width). Chaotic runs (bounces,
ν-jitter, gradient noise on rough landscapes) amplify such a last-bit difference until the run
goes elsewhere; ``docs/reproducibility.md`` lists the rows of the table that do.

Sources, all read at run time:

- NumPy's SIMD targets: the public :func:`numpy.lib.introspect.opt_func_info` (NumPy >= 2.0)
  for the target each of ``exp``, ``log``, ``sin``, ``cos``, ``sqrt`` and ``power`` dispatches
  to in float32 and float64, and the CPU's baseline and found extensions that
  :func:`numpy.show_runtime` prints (read from the same module attributes it reads,
  ``numpy._core._multiarray_umath.__cpu_baseline__`` / ``__cpu_dispatch__`` /
  ``__cpu_features__``; left out if a NumPy version lacks them).
- The BLAS libraries loaded in the process (NumPy's and SciPy's, which SciPy's banded solves
  use): ``threadpoolctl.threadpool_info()`` gives each one's implementation, version, kernel
  ("architecture", e.g. OpenBLAS's ``Haswell`` or ``SkylakeX``) and threads. Without
  threadpoolctl, NumPy's build configuration names the library but not the kernel.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

__all__ = ["FUNCTIONS", "fingerprint_text", "numerical_fingerprint"]

#: The NumPy ufuncs whose dispatch target is reported (those the problems and steps use).
FUNCTIONS = ("exp", "log", "sin", "cos", "sqrt", "power")


def _simd() -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        from numpy._core import _multiarray_umath as umath  # type: ignore[attr-defined]

        features = umath.__cpu_features__
        out["baseline"] = list(umath.__cpu_baseline__)
        out["found"] = [f for f in umath.__cpu_dispatch__ if features.get(f)]
        out["not_found"] = [f for f in umath.__cpu_dispatch__ if not features.get(f)]
    except (ImportError, AttributeError):  # another NumPy layout: the dispatch below remains
        pass
    try:
        from numpy.lib.introspect import opt_func_info
    except ImportError:  # NumPy < 2.0
        return out
    pattern = "^(" + "|".join(FUNCTIONS) + ")$"
    info = opt_func_info(func_name=pattern, signature="float(32|64)")
    dispatch = {}
    for name in FUNCTIONS:
        for sig, entry in sorted(info.get(name, {}).items()):
            if set(sig) <= {"f"} or set(sig) <= {"d"}:
                dtype = "float32" if sig[0] == "f" else "float64"
                dispatch[f"{name}/{dtype}"] = entry.get("current")
    out["dispatch"] = dispatch
    return out


def _blas() -> list[dict[str, Any]]:
    import scipy.linalg  # noqa: F401  (loads SciPy's BLAS, which the PDE solves use)

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config: Any = (np.show_config(mode="dicts")
                       if int(np.__version__.split(".")[0]) >= 2 else {})
        blas = (config or {}).get("Build Dependencies", {}).get("blas", {})
        return [{"library": "numpy", "internal_api": blas.get("name"),
                 "version": blas.get("version"), "architecture": None,
                 "note": "kernel unknown: install threadpoolctl"}]
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        path = lib.get("filepath", "")
        owner = "scipy" if "scipy.libs" in path or "scipy/" in path else (
            "numpy" if "numpy" in path else os.path.basename(path))
        out.append({"library": owner, "internal_api": lib.get("internal_api"),
                    "version": lib.get("version"), "architecture": lib.get("architecture"),
                    "threads": lib.get("num_threads"), "file": os.path.basename(path)})
    return out


def numerical_fingerprint() -> dict[str, Any]:
    """NumPy's version and SIMD targets, the BLAS kernels, the CPU and Python (plain data)."""
    env = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES",
                                      "NPY_ENABLE_CPU_FEATURES") if k in os.environ}
    return {
        "numpy": np.__version__,
        "simd": _simd(),
        "blas": _blas(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "environment": env,
    }


def fingerprint_text(fp: dict[str, Any]) -> str:
    """The fingerprint as two or three lines for the report's header."""
    simd = fp.get("simd", {})
    by_target: dict[str, list[str]] = {}
    for key, target in (simd.get("dispatch") or {}).items():
        name = key.split("/")[0]
        if name not in by_target.setdefault(str(target), []):
            by_target[str(target)].append(name)
    dispatch = "; ".join(f"{', '.join(v)} -> {k}" for k, v in by_target.items()) or "?"
    found = ", ".join(simd.get("found", [])) or "none"
    line = (f"numerical fingerprint: NumPy {fp['numpy']}, SIMD baseline "
            f"{', '.join(simd.get('baseline', [])) or '?'}, found {found}, dispatch {dispatch}")
    blas = "; ".join(
        f"{b['library']}: {b['internal_api']} {b['version']} kernel {b['architecture']}"
        + (f", {b['threads']} threads" if b.get("threads") else "")
        for b in fp.get("blas", []))
    lines = [line, f"BLAS: {blas or 'none loaded'}"]
    if fp.get("environment"):
        lines.append("set: " + ", ".join(f"{k}={v}" for k, v in fp["environment"].items()))
    return "\n".join(lines)

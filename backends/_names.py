"""Backend names -> array namespaces.

A *backend* is an array library that implements (or is wrapped by ``array_api_compat`` into)
the Python Array API standard. The names users pass on the command line and in tests are the
keys of :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any

__all__ = [
    "BACKENDS",
    "BackendNotInstalledError",
    "available_backends",
    "get_namespace",
    "namespace_name",
]

#: Backend name -> (module that must import, the pip command that installs it).
BACKENDS: dict[str, tuple[str, str]] = {
    "numpy": ("numpy", "pip install numpy"),
    "array_api_strict": ("array_api_strict", "pip install 'physopt_ref[test]'"),
    "torch": ("torch", "pip install 'physopt_ref[torch]'  (pins the CPU-capable torch==2.13.0)"),
    "jax": ("jax", "pip install 'physopt_ref[jax]'"),
    "cupy": ("cupy", "pip install 'physopt_ref[cupy]'  (needs an NVIDIA GPU and CUDA 12)"),
}

#: The compliant namespace module of each backend.
_NAMESPACES = {
    "numpy": "array_api_compat.numpy",
    "array_api_strict": "array_api_strict",
    "torch": "array_api_compat.torch",
    "jax": "jax.numpy",
    "cupy": "array_api_compat.cupy",
}


class BackendNotInstalledError(ImportError):
    """Raised when a backend is asked for by name but cannot be imported here."""


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; the known backends are {sorted(BACKENDS)}")


def get_namespace(name: str) -> ModuleType:
    """Return the Array API namespace for a backend name.

    Parameters
    ----------
    name : str
        One of ``numpy``, ``array_api_strict``, ``torch``, ``jax``, ``cupy``.

    Returns
    -------
    module
        The compliant namespace: ``array_api_compat.numpy`` / ``.torch`` / ``.cupy`` for the
        libraries that need the compat wrapper, ``array_api_strict`` itself, ``jax.numpy``.

    Raises
    ------
    ValueError
        For a name that is not a known backend.
    BackendNotInstalledError
        When the library is not importable; the message says how to install it.
    """
    _check_name(name)
    module, how = BACKENDS[name]
    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, or CUDA initialisation errors for cupy
        raise BackendNotInstalledError(
            f"backend {name!r} is not available here ({type(exc).__name__}: {exc}); "
            f"install it with: {how}"
        ) from exc
    # JAX's x64 flag is the user's choice (float64 needs it); it is never changed here.
    xp = importlib.import_module(_NAMESPACES[name])
    if name == "cupy":
        import cupy

        cupy.cuda.runtime.getDeviceCount()  # raises without a usable GPU
    return xp


def available_backends() -> list[str]:
    """List the backend names that import (and, for CuPy, see a GPU) on this machine."""
    names = []
    for name in BACKENDS:
        if importlib.util.find_spec(BACKENDS[name][0]) is None:
            continue
        try:
            get_namespace(name)
        except BackendNotInstalledError:
            continue
        names.append(name)
    return names


def namespace_name(xp: Any) -> str:
    """Return the backend name of a namespace (the inverse of :func:`get_namespace`)."""
    import array_api_compat as compat

    if compat.is_numpy_namespace(xp):
        return "numpy"
    if compat.is_torch_namespace(xp):
        return "torch"
    if compat.is_jax_namespace(xp):
        return "jax"
    if compat.is_cupy_namespace(xp):
        return "cupy"
    if compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", repr(xp))

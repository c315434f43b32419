"""Backends: names -> Array API namespaces, devices, host conversion, seeded random draws.

>>> from physopt_ref.backends import get_namespace, available_backends, normal
>>> xp = get_namespace("numpy")
>>> "numpy" in available_backends()
True
"""

from ._device import asarray_like, device_of, namespace_of, to_numpy
from ._names import (
    BACKENDS,
    BackendNotInstalledError,
    available_backends,
    get_namespace,
    namespace_name,
)
from ._random import host_normal, host_uniform, normal, philox4x32, random_bits, uniform

__all__ = [
    "BACKENDS",
    "BackendNotInstalledError",
    "asarray_like",
    "available_backends",
    "device_of",
    "get_namespace",
    "host_normal",
    "host_uniform",
    "namespace_name",
    "namespace_of",
    "normal",
    "philox4x32",
    "random_bits",
    "to_numpy",
    "uniform",
]

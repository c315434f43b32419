"""physopt_ref: reference implementations of physics-inspired optimizer steps.

Every optimizer is a factory returning an :class:`Optimizer` with pure ``init`` and ``step``
functions, written once against the Python Array API (NumPy, CuPy, array-api-strict, PyTorch,
JAX). The contract (v2) is described in the docs site's "The contract" page (``docs/contract.md``).

The public names are imported explicitly below (so that IDEs and type checkers see them) and
listed in ``__all__``. Heavy optional imports stay lazy: SciPy's optimizer module loads only when
:func:`scipy_method` is called, the command line (:mod:`physopt_ref.cli`) only when it runs, and
the adapters :mod:`physopt_ref.torch` (``torch.optim.Optimizer`` classes) and
:mod:`physopt_ref.optax` (optax transformations) only when imported.
"""

from importlib import metadata as _metadata

from physopt_ref.adapters.scipy import scipy_method
from physopt_ref.core.checks import checks_enabled, debug_checks, set_debug_checks
from physopt_ref.core.compile import CompiledStep, compile
from physopt_ref.core.context import COUNT_MAX, batch_ndim_of
from physopt_ref.core.contract import Optimizer
from physopt_ref.core.registry import (
    REGISTRY,
    RegistryEntry,
    get_optimizer,
    register,
    registered_names,
)
from physopt_ref.core.schedules import (
    COOLING_SCHEDULES,
    CoolingSchedule,
    HostSchedule,
    Schedule,
    constant,
    cosine_decay,
    exponential_decay,
    host_schedule,
)
from physopt_ref.core.tree import tree_flatten, tree_leaves, tree_map, tree_unflatten
from physopt_ref.optimizers.bbi import BBIState, bbi
from physopt_ref.optimizers.classic import (
    AdamState,
    MomentumState,
    NesterovState,
    SGDState,
    adam,
    heavy_ball,
    nesterov,
    sgd,
)
from physopt_ref.optimizers.coolmomentum import (
    CoolMomentumState,
    coolmomentum,
    coolmomentum_schedule,
    coolmomentum_temperature,
    rho_geometric_temperature,
    rho_linear_temperature,
    rho_paper,
)
from physopt_ref.optimizers.dyna import (
    DampingRamp,
    DynaState,
    damping_ramp,
    default_fan_in,
    dyna,
    dyna_restart,
    dyna_warm_restart,
    resolve_fan_in,
)
from physopt_ref.optimizers.dyna_prototype import DynaPrototypeState, dyna_prototype
from physopt_ref.optimizers.dynamic_relaxation import (
    DynamicRelaxationState,
    critical_time_step,
    discrete_critical_damping,
    dynamic_relaxation,
    relaxation_beta,
    relaxation_spectral_radius,
)
from physopt_ref.optimizers.ecdsep import ECDSepState, ecdsep
from physopt_ref.optimizers.gravity import GravityState, gravity, gravity_beta_hat, gravity_zeta
from physopt_ref.optimizers.oscillator import (
    amplitude_decay_per_step,
    critical_momentum,
    damping,
    damping_ratio,
    damping_regime,
    discrete_contraction,
    mass,
    mechanical_energy,
)
from physopt_ref.runner.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    LoadedState,
    checkpoint_info,
    load_state,
    save_state,
)
from physopt_ref.runner.chunk_plan import ChunkPlan, plan_chunks
from physopt_ref.runner.chunked import ChunkedRunError, run_chunked
from physopt_ref.runner.loop import STATUS_MESSAGES, StepInfo, Trace, run
from physopt_ref.runner.search import SearchResult, search
from physopt_ref.runner.stats import evaluations_ecdf, wilson_interval
from physopt_ref.transforms.chain import Chain, chain
from physopt_ref.transforms.gradient import (
    TRANSFORMS,
    GradientTransform,
    clip_by_global_norm,
    clip_by_value,
    coupled_weight_decay,
    decoupled_weight_decay,
    masked,
    non_finite_guard,
)

#: The installed distribution's version (one source: ``pyproject.toml``).
__version__ = _metadata.version("physopt_ref")

__all__ = [
    "COOLING_SCHEDULES",
    "COUNT_MAX",
    "FORMAT_VERSION",
    "REGISTRY",
    "STATUS_MESSAGES",
    "TRANSFORMS",
    "AdamState",
    "BBIState",
    "Chain",
    "CheckpointError",
    "ChunkPlan",
    "ChunkedRunError",
    "CompiledStep",
    "CoolMomentumState",
    "CoolingSchedule",
    "DampingRamp",
    "DynaPrototypeState",
    "DynaState",
    "DynamicRelaxationState",
    "ECDSepState",
    "GradientTransform",
    "GravityState",
    "HostSchedule",
    "LoadedState",
    "MomentumState",
    "NesterovState",
    "Optimizer",
    "RegistryEntry",
    "SGDState",
    "Schedule",
    "SearchResult",
    "StepInfo",
    "Trace",
    "__version__",
    "adam",
    "amplitude_decay_per_step",
    "batch_ndim_of",
    "bbi",
    "chain",
    "checkpoint_info",
    "checks_enabled",
    "clip_by_global_norm",
    "clip_by_value",
    "compile",
    "constant",
    "coolmomentum",
    "coolmomentum_schedule",
    "coolmomentum_temperature",
    "cosine_decay",
    "coupled_weight_decay",
    "critical_momentum",
    "critical_time_step",
    "damping",
    "damping_ramp",
    "damping_ratio",
    "damping_regime",
    "debug_checks",
    "decoupled_weight_decay",
    "default_fan_in",
    "discrete_contraction",
    "discrete_critical_damping",
    "dyna",
    "dyna_prototype",
    "dyna_restart",
    "dyna_warm_restart",
    "dynamic_relaxation",
    "ecdsep",
    "evaluations_ecdf",
    "exponential_decay",
    "get_optimizer",
    "gravity",
    "gravity_beta_hat",
    "gravity_zeta",
    "heavy_ball",
    "host_schedule",
    "load_state",
    "masked",
    "mass",
    "mechanical_energy",
    "nesterov",
    "non_finite_guard",
    "plan_chunks",
    "register",
    "registered_names",
    "relaxation_beta",
    "relaxation_spectral_radius",
    "resolve_fan_in",
    "rho_geometric_temperature",
    "rho_linear_temperature",
    "rho_paper",
    "run",
    "run_chunked",
    "save_state",
    "scipy_method",
    "search",
    "set_debug_checks",
    "sgd",
    "tree_flatten",
    "tree_leaves",
    "tree_map",
    "tree_unflatten",
    "wilson_interval",
]

"""``physopt_ref.testing``: property checks for any optimizer with ``init`` and ``step``.

Point it at your own optimizer, as ``numpy.testing`` or array-api-tests serve numerical code and
array libraries::

    from physopt_ref.testing import Subject, verify
    report = verify(Subject("mine", my_factory, {"lr": 0.1, "momentum": 0.9}),
                    physics=["stability=heavy_ball", "bias_correction"])
    print(report.table())          # one row per property: pass / FAIL, measured vs allowed
    report.raise_if_failed()

or from the shell: ``physopt-ref verify my_module:my_factory --hp lr=0.1``. A
``torch.optim.Optimizer`` subclass (``physopt-ref verify torch.optim:Adam --hp lr=0.01``) and
an optax transformation factory (``optax:adam``) are subjects too
(:func:`~physopt_ref.testing.frameworks.framework_subject`).

The kit adapts to the subject: it probes which parameter trees (one array, lists, tuples,
dicts), ensembles and loss keyword the optimizer takes and draws only those
(:mod:`.probe`); without ``physics`` it proposes physics checks from the hyperparameter names
and the first steps and says why (:mod:`.suggest`). The report's notes say both.

Layers
------
- **Checks** (no hypothesis needed): functions that run one input and return a
  :class:`CheckResult` (the property, what was measured against what was allowed, where, and
  the input). The contract (:mod:`.contract`, :mod:`.compile`): purity with read-only inputs,
  dtype and device kept, determinism under a seed, ensemble = single runs, backend parity with
  NumPy float64, the state of arrays, jit / scan / torch.compile. The physics
  (:mod:`.stability`, :mod:`.energy`, :mod:`.steps`, :mod:`.damping`): stability thresholds on
  quadratics, energy conservation of Hamiltonian steps, bias correction under a constant
  gradient, bounded steps, damping regimes.
- **Strategies** (:mod:`physopt_ref.testing.strategies`, needs hypothesis: the ``testing``
  extra): parameter trees, gradients, losses, ensembles, backends, and valid hyperparameters of
  every registered optimizer.
- **verify** (needs hypothesis): draws inputs per property, shrinks a failure to a minimal
  counterexample, and reports one row per property (:class:`Report`).

The project's own tests run through these same functions.
"""

from physopt_ref.testing._result import CheckResult, Condition, PropertyError, Report, combine
from physopt_ref.testing.compile import (
    check_jax_jit,
    check_jax_scan,
    check_torch_compile,
    compile_tolerances,
)
from physopt_ref.testing.contract import (
    NP,
    check_backend_parity,
    check_determinism,
    check_device_kept,
    check_dtype_kept,
    check_ensemble_equals_single_runs,
    check_purity,
)
from physopt_ref.testing.damping import (
    check_contraction_rate,
    check_critical_damping,
    check_energy_decay,
    envelope_rate,
    momentum_trajectory,
)
from physopt_ref.testing.energy import (
    BornInfeld,
    ECDSepEnergy,
    Hamiltonian,
    check_energy_drift_bounded,
    check_energy_error_order,
    check_energy_shell,
    max_energy_drift,
    one_step_energy_errors,
)
from physopt_ref.testing.frameworks import framework_subject
from physopt_ref.testing.hyperparameters import RANGES, hyperparameter_space
from physopt_ref.testing.probe import Accepts, probe
from physopt_ref.testing.properties import (
    PHYSICS_PRESETS,
    REGISTERED_PHYSICS,
    Property,
    bias_correction,
    bounded_step,
    contract_properties,
    damping_regimes,
    energy_conservation,
    physics_preset,
    stability_bound,
)
from physopt_ref.testing.stability import (
    STABILITY_METHODS,
    check_stability_at,
    check_stability_threshold,
    final_amplitude,
    measure_stability_threshold,
    stability_threshold,
)
from physopt_ref.testing.steps import (
    check_bias_correction,
    check_step_bound,
    dyna_step_bound,
    ecdsep_step_bound,
    step_sizes,
)
from physopt_ref.testing.structure import (
    check_count_saturates,
    check_invalid_hyperparameters_refused,
    check_mismatched_inputs_refused,
    check_per_run_arrays_checked,
    check_per_run_hyperparameter,
    check_pickles,
    check_state_structure,
    check_tree_kinds,
    check_zero_gradient_finite,
    state_signature,
)
from physopt_ref.testing.subject import Subject, as_subject
from physopt_ref.testing.suggest import suggest_physics
from physopt_ref.testing.verify import DEFAULT_EXAMPLES, search, verify
from physopt_ref.testing.workloads import (
    CONTRACT_WORKLOAD,
    QuadraticWorkload,
    leaf_paths,
    on_backend,
    trajectory,
)

__all__ = [
    "CONTRACT_WORKLOAD",
    "DEFAULT_EXAMPLES",
    "NP",
    "PHYSICS_PRESETS",
    "RANGES",
    "REGISTERED_PHYSICS",
    "STABILITY_METHODS",
    "Accepts",
    "BornInfeld",
    "CheckResult",
    "Condition",
    "ECDSepEnergy",
    "Hamiltonian",
    "Property",
    "PropertyError",
    "QuadraticWorkload",
    "Report",
    "Subject",
    "as_subject",
    "bias_correction",
    "bounded_step",
    "check_backend_parity",
    "check_bias_correction",
    "check_contraction_rate",
    "check_count_saturates",
    "check_critical_damping",
    "check_determinism",
    "check_device_kept",
    "check_dtype_kept",
    "check_energy_decay",
    "check_energy_drift_bounded",
    "check_energy_error_order",
    "check_energy_shell",
    "check_ensemble_equals_single_runs",
    "check_invalid_hyperparameters_refused",
    "check_jax_jit",
    "check_jax_scan",
    "check_mismatched_inputs_refused",
    "check_per_run_arrays_checked",
    "check_per_run_hyperparameter",
    "check_pickles",
    "check_purity",
    "check_stability_at",
    "check_stability_threshold",
    "check_state_structure",
    "check_step_bound",
    "check_torch_compile",
    "check_tree_kinds",
    "check_zero_gradient_finite",
    "combine",
    "compile_tolerances",
    "contract_properties",
    "damping_regimes",
    "dyna_step_bound",
    "ecdsep_step_bound",
    "energy_conservation",
    "envelope_rate",
    "final_amplitude",
    "framework_subject",
    "hyperparameter_space",
    "leaf_paths",
    "max_energy_drift",
    "measure_stability_threshold",
    "momentum_trajectory",
    "on_backend",
    "one_step_energy_errors",
    "physics_preset",
    "probe",
    "search",
    "stability_bound",
    "stability_threshold",
    "state_signature",
    "step_sizes",
    "suggest_physics",
    "trajectory",
    "verify",
]

"""The optimizer families, one module each: the update equations and one registry line.

- :mod:`~physopt_ref.optimizers.classic`: SGD, heavy ball, Nesterov, Adam;
- :mod:`~physopt_ref.optimizers.oscillator`: the damped-oscillator relations (Yang et al. 2018);
- :mod:`~physopt_ref.optimizers.dyna`: Dyna and its prototype (Han 2018);
- :mod:`~physopt_ref.optimizers.dynamic_relaxation`: dynamic relaxation;
- :mod:`~physopt_ref.optimizers.coolmomentum`: CoolMomentum (Borysenko & Byshkin 2021);
- :mod:`~physopt_ref.optimizers.bbi`, :mod:`~physopt_ref.optimizers.ecdsep` and their shared
  machinery :mod:`~physopt_ref.optimizers.ecd_common`: energy-conserving descent;
- :mod:`~physopt_ref.optimizers.gravity`: Gravity (Bahrami & Zadeh 2021).

Each module imports only :mod:`physopt_ref.core`, :mod:`physopt_ref.transforms` and
:mod:`physopt_ref.backends`.
"""

"""The COCO/BBOB harness (import path ``physopt_ref.bbob``).

The implementation lives in :mod:`physopt_ref.adapters.bbob`; ``cocoex`` is imported when a run
starts.
"""

from physopt_ref.adapters.bbob import (
    FUNCTION_GROUPS,
    TARGET_EXPONENTS,
    BBOBResult,
    CocoProblem,
    bbob,
)

__all__ = [
    "FUNCTION_GROUPS",
    "TARGET_EXPONENTS",
    "BBOBResult",
    "CocoProblem",
    "bbob",
]

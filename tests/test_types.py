"""Defects the type checker found (``python .ci/typecheck``), each with a test of the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from physopt_ref.cli.args import UsageError
from physopt_ref.cli.verify import load_factory
from physopt_ref.testing._result import CheckResult


def test_verify_refuses_a_file_that_is_not_a_module(tmp_path: Path) -> None:
    """``verify path/to/file.txt:make``: a file Python cannot load as a module is a usage error
    (it was an AttributeError from ``importlib`` on a None spec)."""
    target = tmp_path / "factory.txt"
    target.write_text("def make():\n    return None\n")
    with pytest.raises(UsageError, match=r"cannot load .* as a Python module"):
        load_factory(f"{target}:make")


def test_check_result_properties_despite_its_property_field() -> None:
    """CheckResult has a field named ``property``; its properties still work."""
    result = CheckResult.skipped("purity", "no reason")
    assert result.property == "purity"
    assert result.status == "skip" and not result.passed and not result.failed
    assert result.margin is None

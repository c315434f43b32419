"""The README fits on a screen and its links resolve; the docs pages' examples run as written.

The docs site itself is built by ``.ci/run`` (``python -m mkdocs build --strict``), which fails
on a broken link or a docstring griffe cannot parse; these tests need no mkdocs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: ``[text](target)`` and ``![alt](target)`` in Markdown.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


def _run_page(path: Path) -> dict[str, object]:
    namespace: dict[str, object] = {}
    blocks = _python_blocks(path)
    assert blocks, f"{path.name} shows no Python example"
    for block in blocks:
        exec(compile(block, str(path), "exec"), namespace)
    return namespace


def test_readme_fits_on_a_screen():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines (at most 300)"


def test_readme_links_resolve():
    targets = LINK.findall(README.read_text(encoding="utf-8"))
    relative = [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and
                not t.startswith("#")]
    assert len(relative) >= 20, "the README should link its docs pages"
    missing = [t for t in relative if not (ROOT / t.split("#", 1)[0]).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_link_pattern_sees_broken_links(tmp_path: Path):
    """The check above can fail: it finds links, with anchors, and tells a missing file."""
    text = "[a](docs/index.md) ![b](docs/bbi_ackley.png) [c](docs/nowhere.md#x) [d](https://x.org)"
    targets = LINK.findall(text)
    assert targets == ["docs/index.md", "docs/bbi_ackley.png", "docs/nowhere.md#x",
                       "https://x.org"]
    assert not (ROOT / targets[2].split("#", 1)[0]).is_file()


def test_mkdocs_nav_lists_every_page():
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        """Reads MkDocs' own tags (``!relative``) as plain values."""

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=Loader)

    def pages(node: object) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        if isinstance(node, dict):
            return [p for value in node.values() for p in pages(value)]
        return []

    nav = pages(config["nav"])
    assert len(nav) == len(set(nav)), "a page is listed twice"
    for page in nav:
        assert (DOCS / page).is_file(), f"mkdocs.yml lists {page}, which does not exist"
    on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert on_disk <= set(nav), f"pages missing from the nav: {sorted(on_disk - set(nav))}"


def test_contract_page_examples(capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("jax")
    ns = _run_page(DOCS / "contract.md")
    out = capsys.readouterr().out
    assert "float32" in out  # the array-api-strict example printed a float32 Array
    assert float(abs(ns["x"][0])) < 1e-6  # converged on |x|²
    assert int(ns["bbi_state"].count) == 100
    # the sweep: row k is the single run with the k-th learning rate
    po = ns["po"]
    for k, lr in enumerate((0.01, 0.1, 0.3)):
        single = po.heavy_ball(lr=lr, momentum=0.5)
        y = np.array([3.0, -2.0])
        state = single.init(y)
        for _ in range(50):
            y, state = single.step(y, 2.0 * y, state)
        np.testing.assert_allclose(np.asarray(ns["runs"])[k], y, rtol=1e-12, atol=0)


def test_transforms_page_examples(capsys: pytest.CaptureFixture[str]):
    for module in ("jax", "optax", "torch"):
        pytest.importorskip(module)
    ns = _run_page(DOCS / "transforms.md")
    out = capsys.readouterr().out
    assert "99 1" in out  # the guard skipped the step with the NaN gradient
    assert int(ns["layer_state"].skipped) == 1
    np.testing.assert_allclose(np.asarray(ns["weights"]["w"]), 1.0, atol=1e-6)
    assert int(ns["optimizer"].state[ns["net"][0].weight]["count"]) == 20
    assert (ns["folder"] / "bbi.pt").is_file()


def test_checkpoints_page_examples():
    ns = _run_page(DOCS / "checkpoints.md")
    np.testing.assert_array_equal(ns["resumed"].losses, ns["whole"].losses)
    assert type(ns["restored"]) is type(ns["guarded"])
    for a, b in zip(ns["restored_state"], ns["layer_state"], strict=True):
        if hasattr(b, "shape"):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_compiled_page_examples(capsys: pytest.CaptureFixture[str]):
    ns = _run_page(DOCS / "compiled.md")
    assert "True" in capsys.readouterr().out  # the donated step wrote in place
    assert np.all(np.abs(ns["buffer"]) < 1.0)


def test_cli_page_examples():
    ns = _run_page(DOCS / "cli.md")
    trace = ns["trace"]
    assert bool(np.all(trace.best_value <= ns["problem"].f_min + 1e-8))
    assert len(ns["runs"]["best_value"]) == 8


def test_scale_page_examples(capsys: pytest.CaptureFixture[str]):
    ns = _run_page(DOCS / "scale.md")
    assert "True True" in capsys.readouterr().out
    np.testing.assert_array_equal(ns["split"].best_value, ns["unsplit"].best_value)


def test_verify_page_examples(capsys: pytest.CaptureFixture[str]):
    pytest.importorskip("hypothesis")
    ns = _run_page(DOCS / "verify.md")
    assert ns["result"].passed
    assert capsys.readouterr().out.startswith("pass")

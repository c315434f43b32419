"""The public surface of ``physopt_ref``: explicit, complete, light to import, layered.

- ``__all__`` lists exactly the names the package imports explicitly, each importable;
- every family module's ``__all__`` is re-exported (a new public name cannot be forgotten);
- ``import physopt_ref`` loads neither SciPy's optimizer module nor the command line nor
  matplotlib nor the testing kit and hypothesis (checked in a fresh interpreter);
- the imports point one way: cli -> library -> core -> backends (checked on the source).
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import physopt_ref

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "physopt_ref"

#: Modules whose ``__all__`` the package re-exports in full.
REEXPORTED = ("core.compile", "runner.loop", "runner.chunked", "runner.stats", "runner.search",
              "optimizers.bbi",
              "runner.checkpoint", "optimizers.classic", "optimizers.coolmomentum",
              "optimizers.dyna", "optimizers.dyna_prototype",
              "optimizers.dynamic_relaxation", "optimizers.ecdsep",
              "optimizers.gravity", "optimizers.oscillator", "core.schedules", "adapters.scipy",
              "transforms.gradient")
#: From the core, only these (the rest of its ``__all__`` is for optimizer authors).
CORE = {"core.context": ("COUNT_MAX", "batch_ndim_of"),
        "core.contract": ("Optimizer",),
        "core.registry": ("REGISTRY", "RegistryEntry", "get_optimizer", "register",
                          "registered_names"),
        "core.checks": ("checks_enabled", "debug_checks", "set_debug_checks"),
        "core.tree": ("tree_flatten", "tree_leaves", "tree_map", "tree_unflatten"),
        "transforms.chain": ("Chain", "chain"),
        "runner.chunk_plan": ("ChunkPlan", "plan_chunks")}
#: Names a module's ``__all__`` holds for optimizer authors but the package does not export.
NOT_EXPORTED = {"core.schedules": {"check_real_or_schedule"},
                "core.compile": {"DONATE_MIN_BYTES"}}


def test_all_is_exactly_the_public_names():
    names = physopt_ref.__all__
    assert len(names) == len(set(names)), "duplicates in __all__"
    for name in names:
        assert hasattr(physopt_ref, name), name
    public = {n for n in vars(physopt_ref) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(physopt_ref, n)).__name__ == "module"}
    assert public - modules == set(names) - {"__version__"}


def test_all_is_the_modules_public_names():
    """A name added to a family module's ``__all__`` must be exported by the package too."""
    expected = {"__version__"}
    for module in REEXPORTED:
        mod = importlib.import_module(f"physopt_ref.{module}")
        names = set(mod.__all__) - NOT_EXPORTED.get(module, set())
        expected |= names
        for name in names:
            assert getattr(physopt_ref, name) is getattr(mod, name), name
    for module, names in CORE.items():
        mod = importlib.import_module(f"physopt_ref.{module}")
        assert set(names) <= set(mod.__all__)
        expected |= set(names)
    assert set(physopt_ref.__all__) == expected


def test_registry_names_are_public():
    for name in physopt_ref.registered_names():
        assert name in physopt_ref.__all__
        assert physopt_ref.REGISTRY[name].factory is getattr(physopt_ref, name)


def test_import_is_light():
    code = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import physopt_ref\n"
        "t = time.perf_counter() - t\n"
        "print(json.dumps({'seconds': t, 'modules': sorted(sys.modules)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    modules = set(json.loads(out.stdout)["modules"])
    for heavy in ("scipy.optimize", "physopt_ref.cli", "matplotlib", "sklearn", "torch",
                  "jax", "optax", "physopt_ref.problems", "physopt_ref.torch",
                  "physopt_ref.optax", "physopt_ref.testing", "hypothesis", "dask",
                  "distributed"):
        assert heavy not in modules, f"import physopt_ref imports {heavy}"


def test_scipy_method_loads_scipy_when_called():
    code = (
        "import sys, physopt_ref\n"
        "assert 'scipy.optimize' not in sys.modules\n"
        "m = physopt_ref.scipy_method('sgd', lr=0.1)\n"
        "assert 'scipy.optimize' in sys.modules and callable(m)\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=120, check=True)


def _imports(path: Path) -> set[str]:
    """Absolute names of the physopt_ref modules that ``path`` imports (relative ones resolved).

    ``backends/`` and ``problems/`` are installed as ``physopt_ref.backends`` / ``.problems``.
    """
    package = list(path.relative_to(ROOT).parts[:-1])
    if package[0] != "physopt_ref":
        package = ["physopt_ref", *package]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.startswith("physopt_ref")}


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_library_never_imports_the_cli():
    library = [p for p in _sources(LIBRARY)
               if not p.is_relative_to(LIBRARY / "cli") and p != LIBRARY / "__main__.py"]
    assert LIBRARY / "runner" / "loop.py" in library
    for path in library + _sources(ROOT / "backends") + _sources(ROOT / "problems"):
        bad = {m for m in _imports(path) if m.startswith("physopt_ref.cli")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_lower_layers_point_down():
    """backends import nothing of physopt_ref; problems import only backends."""
    for path in _sources(ROOT / "backends"):
        bad = {m for m in _imports(path) if not m.startswith("physopt_ref.backends")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
    for path in _sources(ROOT / "problems"):
        bad = {m for m in _imports(path)
               if not m.startswith(("physopt_ref.backends", "physopt_ref.problems"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_guards_against_the_project_itself():
    """No code asks whether the project's own modules or optimizers exist."""
    patterns = ("not available in this version", "not installed in this version",
                '" in REGISTRY', "' in REGISTRY")
    for path in _sources(LIBRARY) + _sources(ROOT / "tests"):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            assert pattern not in text, f"{path.relative_to(ROOT)} contains {pattern!r}"


# ---------------------------------------------------------------------------------------------
# The layout (issue 20): rooms, floors, no circles, small modules.

#: The floors, top to bottom; a module may import its own floor's modules and those below.
FLOORS = (
    ("physopt_ref.cli", "physopt_ref.__main__"),
    ("physopt_ref.testing",),
    ("physopt_ref",),  # the public surface (its __init__): below the kit and the application
    ("physopt_ref.adapters", "physopt_ref.torch", "physopt_ref.optax", "physopt_ref.bbob"),
    ("physopt_ref.runner",),
    ("physopt_ref.optimizers",),
    ("physopt_ref.transforms",),
    ("physopt_ref.core",),
    ("physopt_ref.problems",),
    ("physopt_ref.backends",),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] != "physopt_ref":
        parts = ["physopt_ref", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _floor(module: str) -> int | None:
    for i, rooms in enumerate(FLOORS):
        if any(module == r or (r != "physopt_ref" and module.startswith(r + ".")) for r in rooms):
            return i
    return None


def _graph() -> dict[str, set[str]]:
    paths = _sources(LIBRARY) + _sources(ROOT / "backends") + _sources(ROOT / "problems")
    modules = {_module_name(p): p for p in paths}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for m in _imports(path):
            while m and m not in modules:
                m = m.rpartition(".")[0]
            if m and m != name:
                deps.add(m)
        graph[name] = deps
    return graph


def test_no_import_circles():
    """Imports at module level and inside functions alike form no circle."""
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node):], node]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if node in done:
            return
        for dep in sorted(graph[node]):
            # a package's __init__ re-exporting its own modules is not a circle
            if not dep.startswith(node + "."):
                visit(dep, [*stack, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_arrows_point_down():
    """cli -> testing -> adapters -> runner -> optimizers -> transforms -> core -> backends."""
    for name, deps in _graph().items():
        here = _floor(name)
        assert here is not None, f"{name} is on no floor"
        for dep in deps:
            there = _floor(dep)
            assert there is not None and there >= here, f"{name} imports {dep} (up a floor)"


def test_modules_are_small_and_the_top_is_tidy():
    top = sorted(p.name for p in LIBRARY.glob("*.py"))
    assert len(top) <= 12, top
    for path in _sources(LIBRARY) + _sources(ROOT / "backends") + _sources(ROOT / "problems"):
        n = len(path.read_text(encoding="utf-8").splitlines())
        assert n <= 500, f"{path.relative_to(ROOT)} has {n} lines"


def test_version_is_the_distributions():
    from importlib.metadata import version

    assert physopt_ref.__version__ == version("physopt_ref")


def test_typed_package():
    assert (LIBRARY / "py.typed").is_file()

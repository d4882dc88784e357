"""Who may import whom, read from the source of every module under ``nmf_lab/``.

The layers, bottom to top, each a sub-package: ``core`` (the numerics: NumPy and the standard library only),
``distributed`` (the blocked problem on Dask, its engine and Zarr stores: the only layer that imports dask,
distributed, dask_jobqueue and zarr),
``data`` (image sets and matrices), ``tracking`` (the only layer that imports MLflow: the store, runs, the
model), ``presentation`` (descriptions, figures, the report) and ``harness`` (the CLI, config, jobs, sweeps,
summaries, processes). A module imports its own layer and the layers below it, never one above; no module
imports another module's private names (``_name``); the harness never imports the studies (``experiments``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmf_lab"
LAYERS = ["core", "distributed", "data", "tracking", "presentation", "harness"]
MODULES = sorted(PACKAGE.rglob("*.py"))
TOP_LEVEL = {"__init__.py", "__main__.py"}  # the package's public face and `python -m nmf_lab`


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str | None:
    """The layer of a module of ``nmf_lab`` (``nmf_lab.core.nmf`` -> ``core``); None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """Every import of ``path``, wherever it stands: (the module, the names taken from it)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def roots(path: Path) -> set[str]:
    return {module.split(".")[0] for module, _ in imports(path)}


def ids(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


def test_every_module_has_a_layer():
    """A module outside the layers would escape every rule below."""
    loose = [ids(path) for path in MODULES if path.name not in TOP_LEVEL or path.parent != PACKAGE]
    assert [name for name in loose if layer_of(module_name(PACKAGE / name)) is None] == []
    assert {layer_of(module_name(path)) for path in MODULES} - {None} == set(LAYERS)


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer_of(module_name(path))
    if own is None:
        return  # nmf_lab/__init__.py and __main__.py sit above every layer
    upward = [
        module
        for module, _ in imports(path)
        if module.startswith("nmf_lab.") and LAYERS.index(layer_of(module) or "core") > LAYERS.index(own)
    ]
    assert upward == [], f"{ids(path)} ({own}) imports from a layer above it"


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_no_module_imports_another_modules_private_names(path):
    own = module_name(path)
    private = [
        f"{module}.{name}"
        for module, names in imports(path)
        if module.startswith("nmf_lab") and module != own
        for name in names
        if name.startswith("_")
    ]
    assert private == []


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_the_harness_never_imports_the_studies(path):
    assert "experiments" not in roots(path)


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_only_the_tracking_layer_imports_mlflow(path):
    if layer_of(module_name(path)) != "tracking":
        assert "mlflow" not in roots(path)


CORE = [path for path in MODULES if layer_of(module_name(path)) == "core"]


@pytest.mark.parametrize("path", CORE, ids=ids)
def test_the_core_imports_numpy_and_the_standard_library_only(path):
    assert roots(path) <= {"numpy", "nmf_lab", "__future__", *sys.stdlib_module_names}


DASK = {"dask", "distributed", "dask_jobqueue", "zarr"}


@pytest.mark.parametrize("path", MODULES, ids=ids)
def test_only_the_distributed_layer_imports_dask_and_zarr(path):
    if layer_of(module_name(path)) != "distributed":
        assert roots(path) & DASK == set()

"""Who may import whom (the design's layers), read from the source: the harness never imports the studies,
only the tracking layer imports mlflow, the numerics import NumPy and the standard library only.

The tracking layer is tracking.py (runs, what they log, runs read back) and model.py (the denoiser as an MLflow
pyfunc model: logging a model needs MLflow's model API, and MLflow imports model.py as the model's loader)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmf_lab"
NUMERICS = [
    "nmf.py",
    "solvers.py",
    "linalg.py",
    "noise.py",
    "metrics.py",
    "errors.py",
    "transform.py",
    "denoiser.py",
    "rank_selection.py",
    "holes.py",
]
TRACKING = {"tracking.py", "model.py"}


def imported_roots(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, wherever the import statement stands."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_harness_never_imports_the_studies(path):
    assert "experiments" not in imported_roots(path)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_the_tracking_layer_imports_mlflow(path):
    assert ("mlflow" in imported_roots(path)) == (path.name in TRACKING)


@pytest.mark.parametrize("name", NUMERICS)
def test_the_numerics_import_numpy_and_the_standard_library_only(name):
    ours_or_allowed = {"numpy", "nmf_lab", "__future__", *sys.stdlib_module_names}
    assert imported_roots(PACKAGE / name) <= ours_or_allowed

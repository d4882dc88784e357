"""Importing nmf-lab does nothing: every module of ``nmf_lab`` imported in a fresh interpreter, in an empty folder,
leaves the environment, ``sys.path``, logging, the warnings filters, the signal handlers, exit handlers, Hydra's
config store and the folder as they were. What a command needs (the current folder on the path, its configs
registered, MLflow quietened) is done by the function that needs it (``nmf_lab.harness.cli.main``,
``nmf_lab.tracking.store.open_client``).

What the third-party packages do when imported is theirs: the probe imports every package that a module of
``nmf_lab`` imports at module level first, and then compares the state before and after importing ``nmf_lab``.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nmf_lab"
ENTRY_POINT = PACKAGE / "__main__.py"  # ``python -m nmf_lab`` runs the app: that is what importing it is for


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> set[str]:
    """The modules ``path`` imports when it is imported (not those imported inside its functions)."""
    found, todo = set(), list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        todo.extend(ast.iter_child_nodes(node))
    return found


PROBE = r"""
import atexit, importlib, json, logging, os, signal, sys, warnings

modules, others = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for name in others:
    importlib.import_module(name)
from hydra.core.config_store import ConfigStore


def listing(node, prefix=""):
    return sorted(
        entry
        for key, value in node.items()
        for entry in (listing(value, f"{prefix}{key}/") if isinstance(value, dict) else [prefix + key])
    )


def state():
    loggers = {"": logging.getLogger()} | {
        name: logger for name, logger in logging.Logger.manager.loggerDict.items() if isinstance(logger, logging.Logger)
    }
    return {
        "environment": dict(os.environ),
        "sys.path": list(sys.path),
        "working directory": os.getcwd(),
        "loggers": {
            name: [logger.level, [repr(handler) for handler in logger.handlers], logger.disabled, logger.propagate]
            for name, logger in loggers.items()
        },
        "logging.disable": logging.root.manager.disable,
        "warnings filters": [repr(entry) for entry in warnings.filters],
        "warnings.showwarning": repr(warnings.showwarning),
        "signal handlers": {
            sig.name: repr(signal.getsignal(sig)) for sig in signal.valid_signals() if isinstance(sig, signal.Signals)
        },
        "sys.excepthook": repr(sys.excepthook),
        "exit handlers": atexit._ncallbacks(),
        "Hydra config store": listing(ConfigStore.instance().repo),
    }


before = state()
for name in modules:
    importlib.import_module(name)
after = state()
print(json.dumps({"before": before, "after": after, "files": sorted(os.listdir("."))}))
"""


def import_everything(cwd: Path) -> dict:
    """Run the probe in a fresh interpreter in ``cwd``, MLflow's and nmf-lab's environment variables unset (so
    that setting one shows), and return what it saw."""
    paths = sorted(path for path in PACKAGE.rglob("*.py") if path != ENTRY_POINT)
    modules = [module_name(path) for path in paths]
    others = sorted(
        {
            name
            for path in paths
            for name in module_level_imports(path)
            if name.split(".")[0] not in {"nmf_lab", "experiments", "__future__"}
        }
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MLFLOW_", "NMF_LAB_"))}
    env["PYTHONPATH"] = str(PACKAGE.parent)  # this checkout's nmf_lab, whatever is installed
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(others)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def changes(before: dict, after: dict) -> dict:
    """What differs between two states, key by key; a logger that importing created (``getLogger(__name__)``)
    counts only if it is not as :mod:`logging` makes one (level NOTSET, no handlers, propagating)."""
    found = {}
    for key in before:
        old, new = before[key], after[key]
        if key == "loggers":
            fresh = [0, [], False, True]
            new = {name: value for name, value in new.items() if name in old or value != fresh}
        if isinstance(old, dict):
            differ = {name: (old.get(name), new.get(name)) for name in old.keys() | new.keys()}
            differ = {name: pair for name, pair in differ.items() if pair[0] != pair[1]}
            if differ:
                found[key] = differ
        elif old != new:
            found[key] = (old, new)
    return found


@pytest.mark.slow  # seconds: the full suite runs it, the inner loop does not
def test_importing_every_module_of_nmf_lab_changes_nothing(tmp_path):
    seen = import_everything(tmp_path)
    found = changes(seen["before"], seen["after"])
    assert found == {}, f"importing nmf_lab changed: {json.dumps(found, indent=1)}"
    assert seen["files"] == []  # no store, no cache, no log file in the current folder


def test_the_probe_sees_what_an_import_could_change():
    """The comparison flags each kind of change the old modules made on import: an environment variable set,
    the current folder put on ``sys.path``, a logger's level, a config registered in Hydra's store."""
    before = {
        "environment": {"HOME": "/root"},
        "sys.path": [""],
        "loggers": {"": [30, [], False, True]},
        "Hydra config store": ["hydra/"],
    }
    after = {
        "environment": {"HOME": "/root", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
        "sys.path": ["", "/somewhere"],
        "loggers": {
            "": [30, [], False, True],
            "nmf_lab.harness.job": [0, [], False, True],
            "mlflow.store": [30, [], False, True],
        },
        "Hydra config store": ["hydra/", "tracking/tracking_schema.yaml"],
    }
    assert changes(before, after) == {
        "environment": {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": (None, "false")},
        "sys.path": ([""], ["", "/somewhere"]),
        "loggers": {"mlflow.store": (None, [30, [], False, True])},
        "Hydra config store": (["hydra/"], ["hydra/", "tracking/tracking_schema.yaml"]),
    }

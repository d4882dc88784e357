"""Plug-ins from outside the project, as a user adds them: a study module with its experiment config in a
folder of their own (``hydra.searchpath``), and a solver registered through the ``nmf_lab.core.solvers`` entry
point. Both run through the real console script against the session's store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nmf_lab.data.toy import TOY_MATRICES

from helpers import runs_of

STUDY = '''
"""A user's study: the sum of the toy matrix, times rank and its own factor; a sweep sums the answers."""
from dataclasses import dataclass


@dataclass
class MineSettings:
    factor: float = 2.0


SETTINGS = {"mine": MineSettings}


def run(settings, run):
    A = settings.data.load()
    run.log_metrics({"answer": float(A.sum()) * settings.rank * settings.mine.factor})


def summarize(children, parent):
    parent.log_metrics({"total": sum(child.metrics["answer"] for child in children),
                        "ranks": sum(child.config.rank for child in children)})
'''

EXPERIMENT = """
# @package _global_
defaults:
  - override /data: toy
experiment:
  study: my_study
rank: 3
mine:
  factor: 3.0
"""

SOLVER = '''
"""A user's solver: multiplicative updates with a damping exponent (1: Lee and Seung's)."""
import numpy as np

from nmf_lab.core.solvers import Option, Products, Solver


def damped_mu(A, W, H, *, power):
    while True:
        H *= ((W.T @ A) / (W.T @ W @ H + 1e-12)) ** power
        W *= ((A @ H.T) / (W @ (H @ H.T) + 1e-12)) ** power
        yield Products(AHt=A @ H.T, HHt=H @ H.T, WtW=W.T @ W, WtA=W.T @ A)


SOLVER = Solver(
    name="damped_mu",
    update=damped_mu,
    monotone=True,
    options={"power": Option(default=1.0, valid=lambda p: 0 < p <= 1, valid_text="in (0, 1]",
                             help="the exponent of the multiplicative factor")},
    summary="multiplicative updates with a damping exponent",
)
'''


def console_script(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A user's project: my_study.py and conf/experiment/mine.yaml, nothing of nmf-lab's changed."""
    (tmp_path / "my_study.py").write_text(STUDY)
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "mine.yaml").write_text(EXPERIMENT)
    return tmp_path


def nmf_lab(folder: Path, tracking_uri: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script("nmf-lab"), *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, **(env or {})},
    )


@pytest.mark.slow
def test_a_users_study_runs_alone_and_as_a_sweep(user_folder, tracking_uri, client, experiment_name):
    searchpath = f"hydra.searchpath=[file://{user_folder / 'conf'}]"
    single = nmf_lab(
        user_folder,
        tracking_uri,
        "experiment=mine",
        searchpath,
        "data.matrix=A2",
        f"tracking.experiment={experiment_name}",
    )
    assert single.returncode == 0, single.stderr
    (run,), _ = runs_of(client, experiment_name)
    assert run.data.metrics["answer"] == TOY_MATRICES["A2"].sum() * 3 * 3.0
    assert run.data.params["experiment.study"] == "my_study" and run.data.params["mine.factor"] == "3.0"
    assert run.data.tags["nmf_lab.study"] == "my_study" and "nmf_lab.git_commit" in run.data.tags

    sweep = nmf_lab(
        user_folder,
        tracking_uri,
        "-m",
        "experiment=mine",
        searchpath,
        "rank=1,2",
        "mine.factor=0.5",
        f"tracking.experiment={experiment_name}-sweep",
    )
    assert sweep.returncode == 0, sweep.stderr
    (parent,), children = runs_of(client, f"{experiment_name}-sweep")
    expected = [TOY_MATRICES["A1"].sum() * d * 0.5 for d in (1, 2)]
    assert sorted(child.data.metrics["answer"] for child in children) == expected
    assert parent.data.metrics["total"] == sum(expected) and parent.data.metrics["ranks"] == 3
    assert parent.data.metrics["n_children"] == 2


@pytest.mark.slow
def test_a_broken_study_fails_before_any_run_naming_the_value(user_folder, tracking_uri, client, experiment_name):
    (user_folder / "my_study_without_run.py").write_text("def summarize(children, parent):\n    pass\n")
    for study, message in (
        ("no_such_module", "no module 'no_such_module'"),
        ("my_study_without_run", "has no function run"),
    ):
        result = nmf_lab(
            user_folder,
            tracking_uri,
            "-m",
            "rank=1,2",
            "experiment=mine",
            f"experiment.study={study}",
            f"hydra.searchpath=[file://{user_folder / 'conf'}]",
            f"tracking.experiment={experiment_name}",
        )
        assert result.returncode != 0
        assert f"invalid config value experiment.study='{study}'" in result.stderr and message in result.stderr
        assert "Traceback" not in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


def test_a_study_that_fails_to_import_names_the_error(run_job, tmp_path, monkeypatch):
    from nmf_lab.harness.config import ConfigError

    (tmp_path / "broken_study.py").write_text("import numpy\nraise RuntimeError('half-written study')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"experiment.study='broken_study'.*RuntimeError: half-written study"):
        run_job("experiment=movies", "experiment.study=broken_study")


@pytest.fixture
def solver_plugin(tmp_path) -> Path:
    """An installed distribution, as pip leaves one: a module and a dist-info folder whose entry_points.txt
    registers its solver in the group nmf_lab.solvers."""
    site = tmp_path / "site"
    (site / "damped_solver-1.0.dist-info").mkdir(parents=True)
    (site / "damped_solver.py").write_text(SOLVER)
    (site / "damped_solver-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: damped-solver\nVersion: 1.0\n"
    )
    (site / "damped_solver-1.0.dist-info" / "entry_points.txt").write_text(
        "[nmf_lab.solvers]\ndamped_mu = damped_solver:SOLVER\n"
    )
    return site


@pytest.mark.slow
def test_a_solver_registered_through_the_entry_point_runs_with_solver_name(
    solver_plugin, tracking_uri, client, experiment_name, tmp_path
):
    env = {"PYTHONPATH": str(solver_plugin)}
    result = nmf_lab(
        tmp_path,
        tracking_uri,
        "experiment=movies",
        "solver=damped_mu",
        "solver.power=0.5",
        "solver.max_iter=40",
        f"tracking.experiment={experiment_name}",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    (run,), _ = runs_of(client, experiment_name)
    assert run.data.params["solver.name"] == "damped_mu" and run.data.params["solver.power"] == "0.5"
    curve = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "error"), key=lambda m: m.step)]
    assert len(curve) == 41 and curve[-1] < curve[0]
    assert np.all(np.diff(curve) <= 1e-9 * curve[0])  # damped MU still never increases the error

    bad = nmf_lab(
        tmp_path,
        tracking_uri,
        "experiment=movies",
        "solver=damped_mu",
        "solver.power=2",
        f"tracking.experiment={experiment_name}-bad",
        env=env,
    )
    assert bad.returncode != 0 and "invalid config value solver.power=2" in bad.stderr
    assert "in (0, 1]" in bad.stderr

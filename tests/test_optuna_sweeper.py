"""The Optuna sweeper (``hydra/sweeper=optuna``): a search is a sweep whose jobs are trials asked from a study
stored beside the runs. End to end through the real CLI against the session's sqlite store, with a user's quick
study (no fit, so the trials cost only their runs) and once with the movies study through its hparams_search
config; the search space, checkpoints and figures alone without a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from nmf_lab.tracking.lifecycle import FAILED, FINISHED

from helpers import artifact_paths, runs_of

STUDY = '''
"""A quick study for the search's tests: loss = (x - 0.3)^2 + cost * trial, a curve falling to it, failures on
purpose (the trial numbers in mine.fail) and a pause (mine.sleep) so that parallel trials overlap."""
import os
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class MineSettings:
    x: float = 0.0
    cost: float = 0.0
    sleep: float = 0.0
    fail: list = field(default_factory=list)
    fit: bool = False


def fit_movies(settings, run, trial):
    """Fit the movie ratings with d = 2 in trial 0 and d = 1 after (an error above trial 0's at every step)."""
    from dataclasses import replace

    from experiments.shared import fit

    result = fit(settings.data.load(), replace(settings, rank=2 if trial == 0 else 1))
    run.log_curve("error", result.errors)
    run.log_metrics({"loss": result.final_error, "n_iter": result.n_iter})
    run.set_tags({"nmf_lab.stop_reason": result.stop_reason})


SETTINGS = {"mine": MineSettings}


def run(settings, run):
    trial = int(os.environ.get("NMF_LAB_TRIAL", "0"))
    if trial in settings.mine.fail:
        raise RuntimeError(f"trial {trial} fails on purpose")
    time.sleep(settings.mine.sleep)
    if settings.mine.fit:
        return fit_movies(settings, run, trial)
    loss = (settings.mine.x - 0.3) ** 2 + settings.mine.cost * trial
    run.log_curve("loss_curve", loss * np.linspace(2.0, 1.0, 20))
    run.log_metrics({"loss": loss})
'''

EXPERIMENT = """
# @package _global_
defaults:
  - override /data: toy
  - override /hydra/sweeper: optuna
experiment:
  study: quick_study
mine:
  x: 0.0
  cost: 0.0
  sleep: 0.0
  fail: []
  fit: false
hydra:
  mode: MULTIRUN
  sweeper:
    objective: loss
    direction: minimize
    intermediate: loss_curve
    sampler:
      seed: 0
"""


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("search")
    (folder / "quick_study.py").write_text(STUDY)
    (folder / "conf" / "experiment").mkdir(parents=True)
    (folder / "conf" / "experiment" / "quick.yaml").write_text(EXPERIMENT)
    return folder


def nmf_lab(folder: Path, tracking_uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "nmf_lab",
            "-m",
            "experiment=quick",
            f"hydra.searchpath=[file://{folder / 'conf'}]",
            *args,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
    )


@pytest.fixture(scope="module")
def two_searches(user_folder, tracking_uri, client):
    """The same search run twice (each trial pauses 1 s): 4 trials one at a time (trial 1 fails on purpose),
    then the same command through joblib, 2 trials at a time: 4 more trials of the same study."""
    name = "search-e2e"
    command = ["mine.x=interval(0,1)", "hydra.sweeper.n_trials=4", "mine.fail=[1]", "mine.sleep=1.0"]
    command += ["hydra.sweeper.report=[loss_curve]"]  # reported for the best run, not searched
    first = nmf_lab(user_folder, tracking_uri, *command, f"tracking.experiment={name}")
    assert first.returncode == 0, first.stdout + first.stderr
    second = nmf_lab(
        user_folder, tracking_uri, *command, f"tracking.experiment={name}", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )  # fmt: skip
    assert second.returncode == 0, second.stdout + second.stderr
    parents, children = runs_of(client, name)
    parents.sort(key=lambda run: run.info.start_time)
    return first, second, parents, children


@pytest.mark.slow
def test_a_search_makes_one_parent_whose_children_are_its_trials(two_searches):
    first, _, (parent, _), children = two_searches
    mine = [child for child in children if child.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id]
    assert sorted(int(child.data.tags["nmf_lab.trial"]) for child in mine) == [0, 1, 2, 3]
    assert parent.info.status == FINISHED and parent.data.metrics["n_jobs"] == 4
    assert {child.data.tags["nmf_lab.optuna_study"] for child in mine} == {parent.data.tags["nmf_lab.optuna_study"]}
    x = [float(child.data.params["mine.x"]) for child in mine]
    assert len(set(x)) == 4 and all(0 <= value <= 1 for value in x)
    assert "Search of loss (minimize)" in first.stdout and "Sweep FINISHED" in first.stdout


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_search_goes_on(two_searches):
    _, _, (parent, _), children = two_searches
    states = {
        int(child.data.tags["nmf_lab.trial"]): (child.info.status, child.data.tags["nmf_lab.trial_state"])
        for child in children
        if child.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id
    }
    assert states == {
        0: (FINISHED, "COMPLETE"),
        1: (FAILED, "FAIL"),
        2: (FINISHED, "COMPLETE"),
        3: (FINISHED, "COMPLETE"),
    }
    assert parent.data.metrics["trials_failed"] == 1 and parent.data.metrics["n_failed"] == 1


@pytest.mark.slow
def test_running_the_command_again_continues_the_study(two_searches, tracking_uri):
    _, second, (first_parent, second_parent), children = two_searches
    study = first_parent.data.tags["nmf_lab.optuna_study"]
    assert second_parent.data.tags["nmf_lab.optuna_study"] == study
    assert first_parent.data.metrics["study_trials"] == 4 and second_parent.data.metrics["study_trials"] == 8
    later = [child for child in children if child.data.tags[MLFLOW_PARENT_RUN_ID] == second_parent.info.run_id]
    assert sorted(int(child.data.tags["nmf_lab.trial"]) for child in later) == [4, 5, 6, 7]
    assert "8 in the study; this sweep 4" in second.stdout
    assert second_parent.data.tags["nmf_lab.optuna_storage"] == tracking_uri  # the study beside the runs


@pytest.mark.slow
def test_trials_run_in_parallel_through_joblib(two_searches, tracking_uri):
    import optuna

    _, second, (_, parent), children = two_searches
    later = sorted(
        (child for child in children if child.data.tags[MLFLOW_PARENT_RUN_ID] == parent.info.run_id),
        key=lambda run: int(run.data.tags["nmf_lab.trial"]),
    )
    assert "4 trials, 2 at a time" in second.stdout + second.stderr
    study = optuna.load_study(
        study_name=parent.data.tags["nmf_lab.optuna_study"],
        storage=optuna.storages.RDBStorage(tracking_uri, skip_compatibility_check=True),
    )
    trials = study.get_trials()[4:]
    for a, b in (trials[0:2], trials[2:4]):  # each batch: both trials asked before either was told
        assert max(a.datetime_start, b.datetime_start) < min(a.datetime_complete, b.datetime_complete)
    a, b = later[2:4]  # the second batch, on warm workers: the two runs overlap in time (each pauses 1 s)
    assert a.info.start_time < b.info.end_time and b.info.start_time < a.info.end_time


@pytest.mark.slow
def test_the_best_run_tag_names_the_child_with_the_best_metric(two_searches, client):
    _, second, (_, parent), children = two_searches
    losses = {
        child.info.run_id: client.get_run(child.info.run_id).data.metrics["loss"]
        for child in children
        if child.info.status == FINISHED
    }
    best = parent.data.tags["nmf_lab.best_run"]
    assert losses[best] == min(losses.values()) == pytest.approx(parent.data.metrics["best_loss"])
    assert best in second.stdout
    assert parent.data.metrics["best_loss_curve"] == client.get_run(best).data.metrics["loss_curve"]
    assert "its loss_curve" in second.stdout and "(reported, not searched)" in second.stdout
    note = parent.data.tags["mlflow.note.content"]
    assert f"runs/{best}" in note.split("**Best trial**", 1)[1].split("\n")[0]


@pytest.mark.slow
def test_the_parent_logs_the_history_and_importance_figures(two_searches, client, tmp_path):
    _, _, (_, parent), _ = two_searches
    paths = artifact_paths(client, parent.info.run_id)
    assert {"figures/optimization_history.png", "figures/param_importances.png", "tables/search.md"} <= set(paths)
    from PIL import Image

    for name in ("optimization_history", "param_importances"):
        local = client.download_artifacts(parent.info.run_id, f"figures/{name}.png", str(tmp_path))
        with Image.open(local) as image:
            assert image.width > 400 and image.height > 150
    assert "figures/optimization_history.png" in parent.data.tags["mlflow.note.content"]


@pytest.mark.slow
def test_a_pruner_marks_unpromising_trials_pruned(user_folder, tracking_uri, client, experiment_name):
    """Trial k's loss curve lies above trial 0's at every checkpoint (cost 1 per trial number): a median pruner
    that needs one finished trial prunes trials 1 to 3."""
    result = nmf_lab(
        user_folder, tracking_uri, "mine.x=interval(0,1)", "mine.cost=1.0", "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:1}",
        f"tracking.experiment={experiment_name}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (parent,), children = runs_of(client, experiment_name)
    states = {int(child.data.tags["nmf_lab.trial"]): child.data.tags["nmf_lab.trial_state"] for child in children}
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "PRUNED", 3: "PRUNED"}
    assert parent.data.metrics["trials_pruned"] == 3 and parent.info.status == FINISHED
    (trial_zero,) = [child for child in children if child.data.tags["nmf_lab.trial"] == "0"]
    assert parent.data.tags["nmf_lab.best_run"] == trial_zero.info.run_id


@pytest.mark.slow
def test_a_pruned_trial_stops_its_fit(user_folder, tracking_uri, client, experiment_name):
    """Trials fitting through experiments.shared.fit report their error at 2 checkpoints while they fit: trial 1
    (d = 1, worse than trial 0's d = 2 from the start) is stopped at the first, half-way through its 1000
    iterations, and recorded PRUNED."""
    result = nmf_lab(
        user_folder, tracking_uri, "mine.x=interval(0,1)", "mine.fit=true", "data.matrix=movies",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.checkpoints=2", "hydra.sweeper.intermediate=error",
        "hydra.sweeper.pruner={_target_:optuna.pruners.MedianPruner,n_startup_trials:1}",
        f"tracking.experiment={experiment_name}",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (parent,), children = runs_of(client, experiment_name)
    runs = {int(child.data.tags["nmf_lab.trial"]): child for child in children}
    assert runs[0].data.tags["nmf_lab.trial_state"] == "COMPLETE" and runs[0].data.metrics["n_iter"] == 1000
    assert runs[1].data.tags["nmf_lab.trial_state"] == "PRUNED" and runs[1].info.status == FINISHED
    assert runs[1].data.metrics["n_iter"] == 500 and runs[1].data.tags["nmf_lab.stop_reason"] == "callback"
    assert parent.data.metrics["trials_pruned"] == 1


@pytest.mark.slow
def test_an_objective_no_run_logs_stops_the_search_naming_the_metrics(
    user_folder, tracking_uri, client, experiment_name
):
    result = nmf_lab(
        user_folder, tracking_uri, "mine.x=interval(0,1)", "hydra.sweeper.n_trials=3", "hydra.sweeper.objective=lost",
        f"tracking.experiment={experiment_name}",
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "hydra.sweeper.objective=lost is not a metric of the trials' runs" in result.stderr
    assert "logged loss" in result.stderr
    (parent,), children = runs_of(client, experiment_name)
    assert parent.info.status == FAILED and len(children) == 1  # it stopped after the first trial


@pytest.mark.slow
def test_the_movies_search_config_runs_on_the_real_study(run_cli, client, experiment_name):
    result = run_cli(
        "experiment=movies", "hparams_search=movies_optuna", "hydra.sweeper.n_trials=2",
        "hydra.sweeper.params.seed='choice(7,8)'",  # a config's space changed on the command line (quoted)
        f"tracking.experiment={experiment_name}",
    )  # fmt: skip
    (parent,), children = runs_of(client, experiment_name)
    assert len(children) == 2 and parent.data.metrics["study_trials"] == 2
    best = min(children, key=lambda run: run.data.metrics["relative_error"])
    # Two seeds of the 6 x 6 movies matrix may reach the same optimum: the best run is one whose error is the least
    best_run = next(child for child in children if child.info.run_id == parent.data.tags["nmf_lab.best_run"])
    assert best_run.data.metrics["relative_error"] == best.data.metrics["relative_error"]
    assert {child.data.params["solver.name"] for child in children} <= {"mu", "hals"}
    assert {child.data.params["seed"] for child in children} <= {"7", "8"}
    assert "best trial" in result.stdout


# -- without a subprocess ------------------------------------------------------------------------------------


def test_the_search_space_is_spelled_as_the_official_plugin_spells_it():
    from hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper import search_space

    space = search_space(
        {"rank": "int(interval(4,32))", "solver.delta": "tag(log, interval(1e-9, 1e-3))"},
        ["experiment=movies", "solver=choice(mu,hals)", "seed=range(0,10,2)", "init=random,nndsvd", "x=interval(0,1)"],
    )
    params = {param.name: param for param in space.params}
    assert space.fixed == ("experiment=movies",)
    assert (params["rank"].kind, params["rank"].low, params["rank"].high) == ("int", 4, 32)
    assert params["solver.delta"].kind == "float" and params["solver.delta"].log
    assert params["solver"].choices == ("mu", "hals") and params["init"].choices == ("random", "nndsvd")
    assert (params["seed"].kind, params["seed"].low, params["seed"].high, params["seed"].step) == ("int", 0, 8, 2)
    assert (params["x"].kind, params["x"].low, params["x"].high, params["x"].log) == ("float", 0.0, 1.0, False)
    distributions = space.distributions()
    assert type(distributions["rank"]).__name__ == "IntDistribution"
    assert type(distributions["solver.delta"]).__name__ == "FloatDistribution" and distributions["solver.delta"].log
    values = {"rank": 5, "solver.delta": 1e-5, "solver": "hals", "seed": 4, "init": "random", "x": 0.5}
    assert space.overrides(values) == [
        "experiment=movies", "rank=5", "solver.delta=1e-05", "solver=hals", "seed=4", "init=random", "x=0.5",
    ]  # fmt: skip


def test_a_choice_of_lists_is_a_choice_of_their_texts():
    from hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper import jobs_to_check, search_space

    (param,) = search_space(None, ["denoise_best.ranks=choice([128],[192,256])"]).params
    assert param.choices == ("[128]", "[192,256]")
    assert param.override("[192,256]") == "denoise_best.ranks=[192,256]"
    assert jobs_to_check(["denoise_best.ranks=choice([128],[192,256])"]) == [
        ["denoise_best.ranks=[128]"],
        ["denoise_best.ranks=[192,256]"],
    ]


@pytest.mark.parametrize(
    "argument, message",
    [
        ("x=interval(1,0)", "is empty"),
        ("x=tag(log, interval(0,1))", "low end above 0"),
        ("x=shuffle(a,b)", "shuffle"),
    ],
)
def test_a_space_optuna_cannot_sample_is_refused_naming_the_key(argument, message):
    from hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper import SearchSpaceError, search_space

    with pytest.raises(SearchSpaceError, match=message):
        search_space(None, [argument])


def test_the_callback_checks_every_choice_and_both_ends_of_each_interval():
    from hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper import jobs_to_check

    jobs = jobs_to_check(["experiment=movies", "rank=int(interval(1,6))", "solver=choice(mu,hals,ahals)"])
    assert jobs == [
        ["experiment=movies", "rank=1", "solver=mu"],
        ["experiment=movies", "rank=6", "solver=mu"],
        ["experiment=movies", "rank=1", "solver=hals"],
        ["experiment=movies", "rank=1", "solver=ahals"],
    ]


def test_a_search_without_parameters_is_refused_before_any_run():
    from hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper import SearchSpaceError, jobs_to_check

    with pytest.raises(SearchSpaceError, match="the search has no parameters"):
        jobs_to_check(["experiment=movies", "rank=3"])


def test_checkpoints_spread_over_the_curve_and_end_at_its_last_step():
    from nmf_lab.harness.search import checkpoint_steps

    assert checkpoint_steps(1000, 4) == [250, 500, 749, 999]
    assert checkpoint_steps(3, 10) == [0, 1, 2]
    assert checkpoint_steps(0, 10) == []


def test_the_study_is_stored_in_the_tracking_database_or_where_a_server_user_says():
    from nmf_lab.harness.config import ConfigError
    from nmf_lab.harness.search import masked, storage_url

    assert storage_url(None, "sqlite:////tmp/mlruns/mlflow.db") == "sqlite:////tmp/mlruns/mlflow.db"
    assert storage_url(None, "postgresql+psycopg2://u:p@db/mlflow") == "postgresql+psycopg2://u:p@db/mlflow"
    assert storage_url("postgresql://db/optuna", "http://server:5000") == "postgresql://db/optuna"
    with pytest.raises(ConfigError, match=r"hydra\.sweeper\.storage"):
        storage_url(None, "http://server:5000")
    assert masked("postgresql://u:secret@db/mlflow") == "postgresql://u:***@db/mlflow"


def test_the_figures_draw_complete_pruned_and_failed_trials():
    from nmf_lab.presentation.search_figures import optimization_history, param_importances

    figure = optimization_history(
        [0, 1, 2, 3], [0.5, None, 0.7, 0.2], ["COMPLETE", "FAIL", "PRUNED", "COMPLETE"],
        objective="loss", direction="minimize", title="t",
    )  # fmt: skip
    (ax,) = figure.axes
    (best,) = [line for line in ax.lines if line.get_label() == "best so far"]
    assert list(best.get_ydata()) == [0.5, 0.5, 0.5, 0.2]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "complete", "pruned (where its run stopped)", "best so far", "failed",
    ]  # fmt: skip
    figure = param_importances({"rank": 0.8, "seed": 0.2}, objective="loss", title="t")
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["seed", "rank"]
    assert np.isclose(sum(patch.get_width() for patch in figure.axes[0].patches), 1.0)


def test_the_plugin_module_imports_no_optuna_mlflow_or_nmf_lab():
    """Hydra imports every plugin module at every start: this one stays light."""
    code = (
        "import sys, hydra_plugins.nmf_lab_optuna_sweeper.optuna_sweeper\n"
        "print(sorted(m for m in ('optuna', 'mlflow', 'nmf_lab') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"

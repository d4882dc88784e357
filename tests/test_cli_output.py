"""What a person sees: the block the CLI prints per job and per sweep, the runs' and experiments' descriptions in
the MLflow UI, and one-line errors (no traceback, no run) for what a user can fix: the config, the data, the
tracking store."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import ModuleType

import pytest
from hydra import compose, initialize_config_dir
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE
from PIL import Image

import experiments.denoise
import experiments.movies
from nmf_lab.data.punks import CACHE_ENV, PATH_ENV
from nmf_lab.harness.config import CONF_DIR, ConfigError, job_config, register_configs, validate
from nmf_lab.harness.job import DataUnavailable, check_data
from nmf_lab.presentation import describe
from nmf_lab.tracking.lifecycle import FINISHED
from nmf_lab.tracking.store import EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND
from nmf_lab.tracking.stored import image_width

from helpers import runs_of
from services import free_port


@dataclass
class Run:
    """A run as the describe module reads it (what :class:`nmf_lab.tracking.stored.StoredRun` gives)."""

    run_id: str
    name: str = ""
    status: str = FINISHED
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    experiment_id: str = "7"
    artifact_uri: str = ""


# -- links, tables, descriptions (in-process) ---------------------------------------------------------------


def test_a_local_store_links_to_mlflow_ui_and_says_how_to_start_it(tmp_path):
    links = describe.ui_links(f"sqlite:///{tmp_path}/mlflow.db")
    assert links.base == "http://127.0.0.1:5000"
    assert links.command == f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db"
    assert links.run("3", "abc") == "http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning"


@pytest.mark.parametrize(
    "uri, base",
    [
        ("http://127.0.0.1:5999", "http://127.0.0.1:5999"),
        ("https://alice:secret@mlflow.example.org:8443/", "https://mlflow.example.org:8443"),
        ("http://[::1]:5000/mlflow/", "http://[::1]:5000/mlflow"),
    ],
)
def test_a_server_is_its_own_ui_without_credentials_in_the_link(uri, base):
    links = describe.ui_links(uri)
    assert links.base == base and links.command is None
    assert "secret" not in links.run("1", "r")


def test_a_database_password_is_masked_in_the_ui_command():
    links = describe.ui_links("postgresql://nmf:s3cret@db.example.org:5432/mlflow")
    assert links.command == "mlflow ui --backend-store-uri 'postgresql://nmf:***@db.example.org:5432/mlflow'"


def test_a_study_says_its_task_and_headline():
    task = describe.study_task(experiments.denoise)
    assert task.startswith("Spec Task 3: denoising an image set") and "\n" not in task
    assert "``" not in task and "`data=`" in task  # docstring markup as Markdown
    assert describe.headline(experiments.denoise) == ("psnr_noisy", "psnr", "clean_error", "model_gain_db")
    assert describe.headline(experiments.movies) == describe.DEFAULT_HEADLINE
    bare = ModuleType("my_study")
    assert describe.study_task(bare) == "A run of the study `my_study`."


def test_the_job_block_names_the_run_its_numbers_and_where_to_look(tmp_path):
    run = Run(
        "0123abcd",
        name="rank=8",
        metrics={"final_error": 12.3456789, "relative_error": 0.1, "n_iter": 50},
        artifact_uri=(tmp_path / "mlruns" / "x y" / "artifacts").as_uri(),
    )
    links = describe.ui_links(f"sqlite:///{tmp_path}/mlflow.db")
    block = describe.job_block(run, experiment="punks", metrics=("final_error", "relative_error", "psnr"), links=links)
    lines = block.splitlines()
    assert lines[0] == "Run FINISHED"
    assert "  experiment      punks (id 7)" in lines and "  run             rank=8 (id 0123abcd)" in lines
    assert "  final_error     12.3457" in lines and "  relative_error  0.1" in lines
    assert not any("psnr" in line or "n_iter" in line for line in lines)  # only the headline the run has
    assert f"  artifacts       {tmp_path}/mlruns/x y/artifacts" in lines  # the folder, not a file: URI
    assert f"  in the UI       {links.run('7', '0123abcd')}" in lines
    assert f"  start the UI    {links.command}" in lines
    server = describe.job_block(
        Run("r", artifact_uri="mlflow-artifacts:/1/r/artifacts"),
        experiment="punks",
        metrics=(),
        links=describe.ui_links("http://127.0.0.1:5999"),
        error="FileNotFoundError: gone",
    )
    assert "  artifacts " not in server and "start the UI" not in server
    assert "  error       FileNotFoundError: gone (traceback: error/traceback.txt in its artifacts)" in server


def test_the_children_table_shows_the_varied_params_status_and_headline():
    children = [
        Run("a", params={"rank": "8", "seed": "0"}, metrics={"final_error": 1.5}),
        Run("b", params={"rank": "16", "seed": "0"}, status="FAILED"),
    ]
    header, rows = describe.children_rows(children, ["rank"], ("final_error", "relative_error"))
    assert header == ["rank", "status", "final_error"]  # no child has relative_error
    assert rows == [["8", FINISHED, "1.5"], ["16", "FAILED", ""]]
    assert describe.text_table(header, rows).splitlines() == [
        "rank  status    final_error",
        "8     FINISHED  1.5",
        "16    FAILED",
    ]


def test_a_run_description_has_the_task_numbers_tables_figures_and_error():
    run = Run("r1", name="rank=8", metrics={"final_error": 2.0}, status="FAILED")
    note = describe.run_note(
        run,
        task="The task.",
        study="experiments.images",
        metrics=("final_error",),
        figures={"figures/2c basis.png": 375, "figures/wide.png": describe.EMBED_WIDTH + 1},
        tables={"tables/t.md": "| a |\n|---|\n| 1 |\n"},
        command="nmf-lab rank=8",
        error="ValueError: bad",
    )
    assert note.startswith("The task.\n\n**Run FAILED** (study `experiments.images`), made by `nmf-lab rank=8`")
    assert "**Error:** `ValueError: bad`" in note and "| final_error | 2 |" in note
    assert "**tables/t.md**\n\n| a |\n|---|\n| 1 |" in note
    assert "![figures/2c basis.png](get-artifact?path=figures%2F2c%20basis.png&run_uuid=r1)" in note
    assert (
        "[`figures/wide.png`](#/experiments/7/runs/r1/artifacts/figures/wide.png?workflowType=machine_learning)" in note
    )
    assert "![figures/wide.png]" not in note  # too wide for the description: linked only
    assert note.index("tables/t.md") < note.index("Figures")


def test_a_sweep_description_links_its_jobs_and_stays_within_mlflow_limit():
    def children(n):
        return [Run(f"{i:032x}", params={"rank": str(i)}, metrics={"final_error": 1.0 / (i + 1)}) for i in range(n)]

    parent = Run("p" * 32, name="sweep: rank=0,1")
    common = dict(task="The task.", study="s", sweep="rank=0,1", varied=["rank"], metrics=("final_error",))
    few = describe.sweep_note(parent, children=children(2), **common)
    assert "**Sweep FINISHED** (study `s`): 2 jobs, 0 failed; varied: `rank`; made by `nmf-lab -m rank=0,1`" in few
    assert f"| [{0:08x}](#/experiments/7/runs/{0:032x}?workflowType=machine_learning) | 0 | FINISHED | 1 |" in few
    many = describe.sweep_note(parent, children=children(400), **common)
    assert len(many) <= describe.NOTE_LIMIT
    assert re.search(r"\.\.\. and \d+ more jobs in `summary/children.csv`", many)
    assert "| 0 | FINISHED | 1 |" in many  # unlinked rows when linked ones do not fit


# -- errors a user can fix, before any run (in-process) -----------------------------------------------------


@pytest.fixture
def settings_of():
    register_configs()

    def settings(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return validate(job_config(compose("config", overrides=list(overrides))))

    return settings


def test_a_missing_or_wrong_punks_sheet_is_found_before_the_run(settings_of, monkeypatch, tmp_path):
    settings = settings_of("data.n_images=10")
    monkeypatch.setenv(PATH_ENV, str(tmp_path / "missing.png"))
    with pytest.raises(DataUnavailable, match=f"NMF_LAB_PUNKS={tmp_path / 'missing.png'}: no such file"):
        check_data(settings)
    blank = tmp_path / "blank.png"
    Image.new("RGBA", (2400, 2400)).save(blank)  # a PNG of the right size, not the official sheet
    monkeypatch.setenv(PATH_ENV, str(blank))
    with pytest.raises(DataUnavailable, match=r"is not the official punks\.png: its SHA-256 is"):
        check_data(settings)


def test_no_copy_and_no_download_is_found_before_the_run(settings_of, monkeypatch, tmp_path):
    monkeypatch.delenv(PATH_ENV, raising=False)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    offline = f"http://127.0.0.1:{free_port()}/punks.png"  # nothing listens there
    with pytest.raises(DataUnavailable, match=r"could not be downloaded from .* or point to a local copy"):
        check_data(settings_of("data.n_images=10", f"data.url={offline}"))


def test_an_svd_start_with_a_rank_above_min_m_n_is_a_config_error(settings_of, punks_sheet, monkeypatch):
    monkeypatch.setenv(PATH_ENV, str(punks_sheet))
    with pytest.raises(ConfigError, match=r"invalid config value rank=65: init=nndsvd needs rank <= min\(m, n\) = 64"):
        check_data(settings_of("data.n_images=64", "init=nndsvd", "rank=65"))
    check_data(settings_of("data.n_images=64", "init=nndsvd", "rank=64"))
    check_data(settings_of("data.n_images=64", "init=random", "rank=65"))  # a random start takes any rank


def test_the_summary_of_a_run_that_is_not_there_is_one_line(tracking_uri):
    from nmf_lab.harness.cli import summary_main

    with pytest.raises(SystemExit, match=f"nmf-lab-summary: no run {'0' * 32} in the store {tracking_uri}"):
        summary_main(["0" * 32, "--tracking-uri", tracking_uri])


# -- through the store: descriptions of runs and experiments ------------------------------------------------


@pytest.mark.slow
def test_a_job_describes_its_run_and_its_experiment(run_job, client, experiment_name):
    run_job("experiment=movies", "solver.max_iter=20", f"tracking.experiment={experiment_name}")
    (run,), _ = runs_of(client, experiment_name)
    note = run.data.tags[MLFLOW_RUN_NOTE]
    final_error = describe.number(run.data.metrics["final_error"])
    assert note.startswith(describe.study_task(experiments.movies))
    assert f"`nmf-lab experiment=movies solver.max_iter=20 tracking.experiment={experiment_name}`" in note
    assert f"| final_error | {final_error} |" in note
    route = f"#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/artifacts/figures/factors.png"
    assert f"[`figures/factors.png`]({route}?workflowType=machine_learning)" in note
    shown = image_width(client, run.info.run_id, "figures/factors.png") <= describe.EMBED_WIDTH
    assert (f"get-artifact?path=figures%2Ffactors.png&run_uuid={run.info.run_id}" in note) == shown
    tags = client.get_experiment_by_name(experiment_name).tags
    assert tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_KIND
    assert "`experiments.movies`" in tags[MLFLOW_RUN_NOTE] and "Model training" in tags[MLFLOW_RUN_NOTE]


# -- the real console script ----------------------------------------------------------------------------------


def test_a_sweep_prints_each_job_then_its_parent_and_a_table(run_cli, tmp_path, experiment_name):
    """On a fresh store (no MLflow start-up chatter either)."""
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    (tmp_path / "fresh").mkdir()
    result = run_cli(
        "-m", "experiment=movies", "solver.max_iter=20", "seed=0,1", f"tracking.experiment={experiment_name}",
        env={"MLFLOW_TRACKING_URI": store},
    )  # fmt: skip
    assert "Creating initial MLflow database tables" not in result.stderr + result.stdout
    client = MlflowClient(store)
    (parent,), children = runs_of(client, experiment_name)
    links = describe.ui_links(store)
    out = result.stdout
    for child in children:
        assert f"(id {child.info.run_id})" in out and links.run(child.info.experiment_id, child.info.run_id) in out
    assert out.count("Run FINISHED") == 2 and out.count("start the UI") == 1  # the command once, at the end
    sweep = out[out.index("Sweep FINISHED") :]
    assert f"(id {parent.info.run_id})" in sweep and links.run(parent.info.experiment_id, parent.info.run_id) in sweep
    assert f"start the UI  mlflow ui --backend-store-uri {store}" in sweep
    rows = [line.split() for line in sweep.splitlines()[-3:]]
    assert rows[0] == ["seed", "status", "final_error", "relative_error"]
    by_seed = {child.data.params["seed"]: child.data.metrics for child in children}
    for seed, status, final_error, relative_error in rows[1:]:
        assert status == FINISHED and final_error == describe.number(by_seed[seed]["final_error"])
        assert relative_error == describe.number(by_seed[seed]["relative_error"])
    note = parent.data.tags[MLFLOW_RUN_NOTE]
    assert "2 jobs, 0 failed; varied: `seed`" in note and note.count("**Sweep FINISHED**") == 1
    assert all(describe.run_route(c.info.experiment_id, c.info.run_id) in note for c in children)


@pytest.mark.parametrize("sweep", [False, True], ids=["job", "sweep"])
def test_unavailable_data_stops_with_one_line_and_no_run(run_cli, client, experiment_name, tmp_path, sweep):
    missing = tmp_path / "missing.png"
    args = ["-m", "seed=0,1"] if sweep else []
    result = run_cli(
        *args, "data.n_images=10", f"tracking.experiment={experiment_name}", env={PATH_ENV: str(missing)}, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"nmf-lab: the data of this job cannot be read: ${PATH_ENV}={missing}: no such file (expected the official "
        "punks.png)"
    )
    assert "Traceback" not in result.stderr
    assert client.get_experiment_by_name(experiment_name) is None


def test_hydra_full_error_shows_the_whole_trace(run_cli, client, experiment_name, tmp_path):
    result = run_cli(
        "data.n_images=10",
        f"tracking.experiment={experiment_name}",
        env={PATH_ENV: str(tmp_path / "missing.png"), "HYDRA_FULL_ERROR": "1"},
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "FileNotFoundError" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("nmf-lab: the data of this job cannot be read")
    assert client.get_experiment_by_name(experiment_name) is None

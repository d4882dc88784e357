"""Blocked fits on real Dask clusters (a LocalCluster, a scheduler joined by address, dask-jobqueue's
SLURMCluster on the suite's one-node SLURM) with A in real Zarr stores on disk: the same iterates as in memory,
a worker SIGKILLed mid-fit changes nothing, an unreachable scheduler is one line, the out-of-core case."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("zarr")

from distributed import Client, LocalCluster

from nmf_lab import fit_nmf
from nmf_lab.data.zarr_images import BlockedImageSet, ZarrImages
from nmf_lab.distributed import fit_blocked
from nmf_lab.distributed.engine import (
    EngineConfig,
    EngineUnavailable,
    check_engine,
    engine_session,
    worker_peak_memory,
)
from nmf_lab.distributed.store import augmented_blocks, image_blocks, open_store, write_blocks


@pytest.fixture(scope="module")
def punks(punks_sheet):
    from nmf_lab.data.punks import Punks

    return Punks(n_images=10000, path=str(punks_sheet)).load()


@pytest.fixture(scope="module")
def store(punks, tmp_path_factory):
    """The first 1500 punks in a Zarr store, 3 column blocks of 500."""
    subset = punks.subset(slice(0, 1500))
    path = tmp_path_factory.mktemp("zarr") / "punks.zarr"
    blocks = image_blocks(subset.images, subset.alpha, subset.ids, 500)
    return write_blocks(path, blocks, n=1500, height=24, width=24, channels=3, name="cryptopunks",
                        source="test", chunk=500, alpha=True)  # fmt: skip


def in_memory_reference(store, solver="hals", max_iter=3):
    A = np.asarray(open_store(store).matrix().compute(), dtype=np.float64)  # float32 values, fitted in float64
    return fit_nmf(A, 6, solver=solver, max_iter=max_iter, seed=2)


def test_a_store_reads_back_as_the_image_set_it_was_written_from(store, punks):
    loaded = ZarrImages(path=str(store)).load()
    np.testing.assert_allclose(loaded.images, punks.images[..., :1500], atol=1e-7)
    np.testing.assert_array_equal(loaded.alpha > 0, punks.alpha[..., :1500] > 0)
    np.testing.assert_array_equal(loaded.ids, np.arange(1500))
    blocked = ZarrImages(path=str(store), n_images=1200, in_memory=False).load()
    assert isinstance(blocked, BlockedImageSet) and blocked.n == 1200
    assert blocked.matrix().chunks[1] == (500, 500, 200)


@pytest.mark.slow  # seconds: the full suite runs it, the inner loop does not
def test_augmented_images_are_shifted_mirrored_recoloured_punks_made_block_by_block(punks):
    first, second = augmented_blocks(punks.images, punks.alpha, 12000, seed=4, chunk=10000)
    np.testing.assert_array_equal(first.colours, punks.matrix().astype(np.float32))  # the sources come first
    assert second.colours.shape == (1728, 2000) and list(second.ids) == list(range(2000))
    opaque = (second.alpha > 0).sum(axis=0)  # a shift within the frame keeps every opaque pixel
    np.testing.assert_array_equal(opaque, (punks.alpha[..., :2000] > 0).sum(axis=(0, 1)))
    shifted, source = second.alpha.reshape(24, 24, 2000) > 0, punks.alpha[..., :2000] > 0
    for axis in (0, 1):  # and nothing wraps round the frame: each sprite keeps its width and height
        extent = [23 - o.any(axis)[::-1].argmax(0) - o.any(axis).argmax(0) for o in (shifted, source)]
        np.testing.assert_array_equal(*extent)
    colour_sums = np.sort(second.colours.reshape(576, 3, 2000).sum(axis=0), axis=0)  # channels permuted
    expected = np.sort(punks.matrix()[:, :2000].reshape(576, 3, 2000).sum(axis=0), axis=0)
    np.testing.assert_allclose(colour_sums, expected, rtol=1e-5)
    assert not np.array_equal(second.colours, punks.matrix()[:, :2000].astype(np.float32))
    (again,) = [b for i, b in enumerate(augmented_blocks(punks.images, punks.alpha, 12000, seed=4, chunk=10000)) if i]
    np.testing.assert_array_equal(again.colours, second.colours)  # each block from its own seed


@pytest.mark.slow
def test_a_fit_on_a_local_cluster_survives_a_worker_killed_mid_fit(store):
    """SIGKILL one worker after the first iteration and the other while the next passes run: Dask reruns the
    lost tasks (on the nanny's fresh worker) and the error curve is the in-memory one to 1e-9."""
    expected = in_memory_reference(store)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GB", dashboard_address=None)
    with cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        def kill(k, error):
            if k in (1, 2):
                pid = pids[k - 1]
                delay = 0.0 if k == 1 else 0.05  # the second while the next pass is in flight
                threading.Timer(delay, os.kill, (pid, signal.SIGKILL)).start()
                killed.append(pid)

        A = open_store(store).matrix()
        result = fit_blocked(A, 6, solver="hals", max_iter=3, seed=2, dtype="float64", callback=kill)
        assert len(killed) == 2
        assert set(client.run(os.getpid).values()).isdisjoint(killed)  # the nannies started new workers
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)


@pytest.mark.slow
def test_an_engine_joins_a_running_scheduler_by_address_and_a_dead_one_is_one_line(store):
    expected = in_memory_reference(store, solver="mu", max_iter=3)
    with LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        config = EngineConfig(kind="dask", address=cluster.scheduler_address, connect_timeout=10)
        check_engine(config)
        with engine_session(config) as engine:
            assert engine.kind == "dask-address" and engine.workers == 1
            result = fit_blocked(open_store(store).matrix(), 6, solver="mu", max_iter=3, seed=2, dtype="float64")
            assert worker_peak_memory() > 0
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)
    with pytest.raises(EngineUnavailable, match=r"engine.address=tcp://127.0.0.1:9: no Dask scheduler answers"):
        check_engine(EngineConfig(kind="dask", address="tcp://127.0.0.1:9", connect_timeout=2))


@pytest.mark.slow
def test_the_embedded_engine_starts_workers_from_config_and_stops_them(store):
    config = EngineConfig(kind="dask", workers=2, threads=1, memory_limit="512MB")
    with engine_session(config) as engine:
        assert engine.kind == "dask-local" and engine.workers == 2 and engine.dashboard.startswith("http")
        from distributed import get_client

        client = get_client()
        limits = [w["memory_limit"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        assert limits == [512 * 10**6] * 2
        fit_blocked(open_store(store).matrix(), 4, solver="mu", max_iter=1)
    assert client.status == "closed"


@pytest.mark.slow
def test_a_fit_runs_on_slurm_workers_through_dask_jobqueue(store, monkeypatch):
    from services import slurm_cluster

    expected = in_memory_reference(store, max_iter=3)
    with slurm_cluster() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        config = EngineConfig(kind="dask", cluster="slurm", workers=1, threads=1, memory_limit="1GB",
                              queue="debug", connect_timeout=120)  # fmt: skip
        with engine_session(config) as engine:
            assert engine.kind == "dask-slurm" and engine.workers == 1
            result = fit_blocked(open_store(store).matrix(), 6, solver="hals", max_iter=3, seed=2, dtype="float64")
    np.testing.assert_allclose(result.errors, expected.errors, rtol=1e-9, atol=0)


def test_the_out_of_core_case_runs_from_the_cli_with_workers_capped_below_the_matrix(
    punks, tmp_path, run_cli, client, experiment_name
):
    """experiment=scale_small: A (1728 x 60,000 float32, 415 MB) in a Zarr store, 2 workers capped at 256 MB;
    the blocked error curve is the in-memory one (float32) and no worker ever held A."""
    n, chunk = 60_000, 2_000
    colours = punks.matrix()[:, :chunk].astype(np.float32)
    blocks = (image_blocks(colours.reshape(24, 24, 3, chunk), None, np.arange(chunk), chunk) for _ in range(n // chunk))
    store = write_blocks(tmp_path / "ooc.zarr", (b for group in blocks for b in group), n=n, height=24, width=24,
                         channels=3, name="punks-tiled", source="test", chunk=chunk)  # fmt: skip
    result = run_cli("experiment=scale_small", f"data.path={store}", "rank=8", "scale.iterations=2",
                     f"tracking.experiment={experiment_name}")  # fmt: skip
    engine_line = [line for line in result.stdout.splitlines() if line.strip().startswith("engine")]
    assert engine_line and "dask-local, 2 workers, dashboard http" in engine_line[-1]  # beside the UI link
    (run,) = client.search_runs([client.get_experiment_by_name(experiment_name).experiment_id])
    metrics = run.data.metrics
    assert metrics["matrix_gb"] == pytest.approx(1728 * n * 4 / 1e9)
    assert metrics["peak_worker_memory_gb"] < metrics["matrix_gb"]  # A never sat in a worker
    assert metrics["curve_max_relative_difference"] < 1e-4
    for key in ("dask_iter_over_numpy", "dask_iter_over_read_floor"):
        assert np.isfinite(metrics[key]) and metrics[key] > 0
    assert run.data.tags["nmf_lab.engine"] == "dask-local" and run.data.tags["nmf_lab.engine.workers"] == "2"


@pytest.mark.parametrize(
    "node, message",
    [
        ({"kind": "spark"}, "kind='spark': one of numpy, dask"),
        ({"kind": "dask", "workers": 0}, "workers=0: must be an integer >= 1"),
        ({"kind": "dask", "memory_limit": "lots"}, "memory_limit='lots': must be a size"),
        ({"kind": "dask", "address": "localhost"}, "address='localhost': must be null or a scheduler address"),
        ({"kind": "dask", "nodes": 3}, "nodes=3: is not an engine key"),
    ],
)
def test_the_engine_config_is_checked_at_the_boundary(node, message):
    from nmf_lab.core.errors import InvalidOption

    with pytest.raises(InvalidOption, match=message):
        EngineConfig.from_node(node)
    assert EngineConfig.from_node(None).kind == "numpy"  # the default: in memory, no Dask

"""Where a job's blocked fits run (``conf/engine/``): in memory with NumPy (the default), or on Dask distributed.

``engine=numpy``: no Dask at all; ``engine=dask``: a Dask ``Client`` is the default scheduler for the whole
job, so every ``dask.compute`` (:class:`~nmf_lab.distributed.problem.BlockedProblem`'s passes) runs there:

- ``engine.cluster=local`` (the default): a ``LocalCluster`` started inside the job with ``workers`` worker
  processes of ``threads`` threads and ``memory_limit`` each, stopped at its end;
- ``engine.address=tcp://HOST:PORT``: joins an existing scheduler (nothing is started or stopped);
- ``engine.cluster=slurm`` (``engine=slurm``): workers are SLURM jobs of dask-jobqueue's ``SLURMCluster``
  (``queue`` the partition, one worker of ``threads`` cores and ``memory_limit`` per job), stopped at the end.

:func:`check_engine` runs before any tracked run exists: a scheduler that does not answer, or Dask missing,
is one line (:class:`EngineUnavailable`). Dask is imported only when the engine is ``dask``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

from nmf_lab.core.errors import InvalidOption

log = logging.getLogger(__name__)

KINDS = ("numpy", "dask")
CLUSTERS = ("local", "slurm")


class EngineUnavailable(RuntimeError):
    """The engine cannot be used (no scheduler answers, Dask not installed); raised before any run exists."""


@dataclass(frozen=True)
class EngineConfig:
    """``engine/``: see the module. ``connect_timeout``: seconds to wait for a scheduler or for the workers."""

    kind: str = "numpy"
    cluster: str = "local"
    address: str | None = None
    workers: int = 2
    threads: int = 1
    memory_limit: str = "2GB"
    dashboard: bool = True
    queue: str | None = None
    walltime: str = "01:00:00"
    local_directory: str | None = None
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidOption("kind", self.kind, f"one of {', '.join(KINDS)}")
        if self.cluster not in CLUSTERS:
            raise InvalidOption("cluster", self.cluster, f"one of {', '.join(CLUSTERS)}")
        for key in ("workers", "threads"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOption(key, value, "must be an integer >= 1")
        if self.address is not None and not (isinstance(self.address, str) and "://" in self.address):
            raise InvalidOption("address", self.address, "must be null or a scheduler address like tcp://HOST:8786")
        try:
            memory_bytes(self.memory_limit)
        except ValueError:
            raise InvalidOption("memory_limit", self.memory_limit, "must be a size like 2GB or 256MB") from None

    @classmethod
    def from_node(cls, node: dict | None) -> EngineConfig:
        """The engine of a config's ``engine`` node (None: the default, NumPy in memory)."""
        if node is None:
            return cls()
        unknown = sorted(set(node) - set(cls.__dataclass_fields__))
        if unknown:
            raise InvalidOption(
                unknown[0], node[unknown[0]], f"is not an engine key ({', '.join(cls.__dataclass_fields__)})"
            )
        return cls(**node)


@dataclass(frozen=True)
class Engine:
    """A started engine: its kind (``numpy``, ``dask-local``, ``dask-address``, ``dask-slurm``), workers,
    dashboard address (or None) and scheduler address (or None)."""

    kind: str
    workers: int
    dashboard: str | None = None
    scheduler: str | None = None

    def describe(self) -> str:
        if self.kind == "numpy":
            return "engine: numpy (in memory, this process)"
        where = f", dashboard {self.dashboard}" if self.dashboard else ""
        return (
            f"engine: {self.kind}, {self.workers} worker{'s' if self.workers != 1 else ''} at {self.scheduler}{where}"
        )


def memory_bytes(size) -> int:
    """``"2GB"``, ``"256MB"``, ``"1.5 GiB"`` or a number of bytes, as bytes."""
    from_text = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                 "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        return int(size)
    text = str(size).strip().upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    unit = text[len(number) :]
    if not number or unit not in from_text:
        raise ValueError(f"not a size: {size!r}")
    return int(float(number) * from_text[unit])


def check_engine(config: EngineConfig) -> None:
    """Before any run: Dask is installed for ``engine=dask``, and a given scheduler answers; else
    :class:`EngineUnavailable` with one line saying what to do."""
    if config.kind == "numpy":
        return
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise EngineUnavailable("engine=dask needs Dask: pip install 'nmf-lab[dask]'") from None
    if config.cluster == "slurm" and config.address is None:
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError:
            raise EngineUnavailable("engine.cluster=slurm needs dask-jobqueue: pip install 'nmf-lab[dask]'") from None
    if config.address is not None:
        _connect(config.address, min(config.connect_timeout, 10.0)).close()


def _connect(address: str, timeout: float, *, default: bool = False):
    from distributed import Client

    try:
        return Client(address, timeout=f"{timeout}s", set_as_default=default)
    except (OSError, TimeoutError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise EngineUnavailable(
            f"engine.address={address}: no Dask scheduler answers there within {timeout:g} s ({reason}); start "
            f"one (dask scheduler --port PORT) or drop engine.address to start a local cluster"
        ) from None


@contextlib.contextmanager
def engine_session(config: EngineConfig) -> Iterator[Engine]:
    """Start (or join) the engine for the length of a job; Dask's client is the default scheduler inside."""
    if config.kind == "numpy":
        yield Engine("numpy", 0)
        return
    with _quiet("distributed"), _session(config) as engine:
        yield engine


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger ``name`` at WARNING for the block: Dask's INFO lines (workers registered, nannies closing)
    would otherwise reach the job's console through the root logger."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _session(config: EngineConfig) -> Iterator[Engine]:
    from distributed import Client

    cluster = None
    if config.address is not None:
        client, kind = _connect(config.address, config.connect_timeout, default=True), "dask-address"
    elif config.cluster == "local":
        from distributed import LocalCluster

        cluster = LocalCluster(
            n_workers=config.workers,
            threads_per_worker=config.threads,
            memory_limit=config.memory_limit,
            dashboard_address=":0" if config.dashboard else None,
            local_directory=config.local_directory,
            processes=True,
        )
        kind = "dask-local"
    else:
        cluster, kind = slurm_cluster(config), "dask-slurm"
    try:
        if cluster is not None:
            client = Client(cluster)  # the default scheduler of every dask.compute until it closes
            if config.cluster == "slurm":
                cluster.scale(jobs=config.workers)
            client.wait_for_workers(config.workers if cluster is not None else 1, timeout=config.connect_timeout)
        engine = Engine(kind, len(client.scheduler_info(n_workers=-1)["workers"]), _dashboard(client),
                        client.scheduler.address)  # fmt: skip
        yield engine
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _dashboard(client) -> str | None:
    with contextlib.suppress(Exception):
        link = client.dashboard_link
        return link if link and ":0/" not in link else None
    return None


def slurm_cluster(config: EngineConfig):
    """dask-jobqueue's ``SLURMCluster``: one worker of ``threads`` cores and ``memory_limit`` per SLURM job in
    the partition ``queue`` (the default partition when None), its Python this one's."""
    import sys

    from dask_jobqueue import SLURMCluster

    directory = config.local_directory or os.environ.get("TMPDIR", "/tmp")
    return SLURMCluster(
        queue=config.queue,
        cores=config.threads,
        processes=1,
        memory=config.memory_limit,
        walltime=config.walltime,
        python=sys.executable,
        local_directory=directory,
        log_directory=directory,
        scheduler_options={"dashboard_address": ":0" if config.dashboard else None},
        job_directives_skip=["--mem"],  # one-node test clusters often have no memory accounting
    )


def worker_peak_memory(client=None) -> float:
    """The largest peak resident memory (bytes, the kernel's ``ru_maxrss``) of any worker process so far."""
    from distributed import get_client

    client = client or get_client()

    def peak():
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

    return float(max(client.run(peak).values()))

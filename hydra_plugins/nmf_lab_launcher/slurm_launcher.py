"""A Hydra launcher for SLURM whose jobs may die without stopping their sweep (``hydra/launcher=slurm``).

submitit's SLURM launcher raises as soon as one job ends without a result (cancelled with ``scancel``, killed
by the cluster for its memory or time, a failed node): Hydra then skips the sweep's end, so the other jobs'
runs get no summary. This one waits for every job and returns such a job as ``FAILED``; the sweep's summary
then ends its run FAILED if it was left RUNNING (:func:`nmf_lab.harness.summary.end_orphans`) and counts it.
Needs the ``cluster`` extra (hydra-submitit-launcher); without it this module defines nothing, and Hydra's
plugin scan passes over it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher
except ImportError:  # no cluster extra: no launcher
    SubmititSlurmLauncher = None

log = logging.getLogger(__name__)

FAILED = "FAILED"
"""What a job that ended without a result returns to the sweep: the status its run ends with
(:data:`nmf_lab.tracking.lifecycle.FAILED`; not imported, so that Hydra's plugin scan at every start imports no
MLflow)."""


if SubmititSlurmLauncher is not None:

    class SlurmLauncher(SubmititSlurmLauncher):
        """submitit's SLURM launcher (the same parameters, one SLURM array job per sweep), except that a job that
        ends without a result is returned as ``FAILED`` instead of stopping the sweep."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
            from submitit.core.utils import UncompletedJobError

            returns = []
            for job, overrides in zip(self._submit(job_overrides, initial_job_idx), job_overrides):
                state = _wait_for_end(job)
                try:
                    if not job.paths.result_pickle.exists():
                        raise UncompletedJobError(f"{state or 'no longer listed by squeue'}, no result file")
                    returns.append(job.results()[0])
                except UncompletedJobError as error:
                    first_line = str(error).strip().splitlines()[0]
                    log.error("SLURM job %s ended without a result (%s); the sweep goes on", job.job_id, first_line)
                    lost = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=FAILED)
                    returns.append(lost)
            return returns

        def _submit(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list:
            """Submit the jobs as submitit's launcher does: one array job, its parameters from the launcher config."""
            import submitit

            assert self.config is not None
            init_keys = {"submitit_folder", "max_num_timeout"}
            executor = submitit.AutoExecutor(
                cluster="slurm",
                folder=self.params["submitit_folder"],
                slurm_max_num_timeout=self.params.get("max_num_timeout", 0),
            )
            shared = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{
                    key if key in shared else f"slurm_{key}": value
                    for key, value in self.params.items()
                    if key not in init_keys
                }
            )
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
            job_params = []
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                job_params.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
            return executor.map_array(self, *zip(*job_params))


RESULT_GRACE_S = 15
"""How long a job SLURM reports COMPLETED may take to show its result file (a shared file system's delay)."""


def _wait_for_end(job) -> str | None:
    """Wait until the submitit ``job`` has left its result, or SLURM (squeue) says it has ended; return the state
    squeue last reported (None: squeue could not tell). submitit alone asks sacct, and on a cluster without
    accounting it never learns that a job died: it would wait forever."""
    from nmf_lab.harness.processes import SLURM_ALIVE, slurm_state

    state = None
    while not job.paths.result_pickle.exists():
        state = slurm_state(job.job_id)
        if state is not None and state not in SLURM_ALIVE:
            deadline = time.monotonic() + (RESULT_GRACE_S if state == "COMPLETED" else 2)
            while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
                time.sleep(0.5)
            break
        time.sleep(1)
    return state

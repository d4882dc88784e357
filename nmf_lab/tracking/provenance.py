"""What it takes to reproduce a run, as tags: the git commit and whether the tree was dirty, the versions of
nmf-lab, NumPy and MLflow, and the BLAS with its thread count."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nmf_lab.tracking.run_log import TAG_PREFIX


def provenance_tags(project_dir: Path) -> dict[str, str]:
    """What it takes to reproduce a run: the git commit (and whether the tree was dirty), the versions of
    nmf-lab, NumPy and MLflow, and the BLAS with its thread count (threadpoolctl)."""
    import subprocess

    import mlflow
    from threadpoolctl import threadpool_info

    import nmf_lab

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(project_dir), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    blas = [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]
    return {
        TAG_PREFIX + "git_commit": commit or "unknown",
        TAG_PREFIX + "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        TAG_PREFIX + "version": nmf_lab.__version__,
        TAG_PREFIX + "numpy_version": np.__version__,
        TAG_PREFIX + "mlflow_version": mlflow.__version__,
        TAG_PREFIX + "blas": ", ".join(
            f"{pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads)" for pool in blas
        )
        or "unknown",
    }

"""``nmf-lab``: the Hydra app. One job is one MLflow run; ``-m`` makes a sweep of child runs.

    nmf-lab                          # the default experiment
    nmf-lab experiment=toy           # spec Task 1 (a sweep of its own)
    nmf-lab -m experiment=movies seed=0,1,2
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from nmf_lab.config import ConfigError, register_configs, validate
from nmf_lab.sweep import run_job
from nmf_lab.tracking import raise_interrupted_on_sigterm

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
"""The project's ``conf/`` folder (the package is installed editable, from the project's own files)."""

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> str:
    """Validate the composed config, then run the selected experiment as one tracked job."""
    try:
        settings = validate(cfg)
    except ConfigError as error:
        raise SystemExit(f"nmf-lab: {error}") from error
    hydra_config = HydraConfig.get()
    raise_interrupted_on_sigterm()
    return run_job(
        cfg,
        settings,
        experiment_name=settings.tracking.experiment or hydra_config.runtime.choices["experiment"],
        overrides=list(hydra_config.overrides.task),
        in_sweep=hydra_config.mode == RunMode.MULTIRUN,
    )


if __name__ == "__main__":
    main()

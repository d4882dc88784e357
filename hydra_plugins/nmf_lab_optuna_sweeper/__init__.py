"""nmf-lab's Hydra sweeper plugin on current Optuna (``hydra/sweeper=optuna``): Hydra finds sweepers in the
``hydra_plugins`` namespace package only."""

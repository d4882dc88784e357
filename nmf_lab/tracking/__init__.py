"""Tracking: the only layer that imports MLflow.

:mod:`~nmf_lab.tracking.store` (where runs are recorded, opening it, its experiments),
:mod:`~nmf_lab.tracking.run_log` (what a run logs), :mod:`~nmf_lab.tracking.lifecycle` (a run always ends in a
final state), :mod:`~nmf_lab.tracking.stored` (runs read back), :mod:`~nmf_lab.tracking.provenance` (what it takes
to reproduce a run) and :mod:`~nmf_lab.tracking.model` (the denoiser as an MLflow model).
"""

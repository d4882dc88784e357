"""The studies of the spec, one thin module each: load, fit, measure, draw, log.

A study is a module named by an experiment config (``experiment.study: experiments.images``). It has
``run(settings, run)`` for one job (``settings``: :class:`nmf_lab.harness.config.Config`, ``run``:
:class:`nmf_lab.tracking.run_log.RunLog`), and may have ``summarize(children, parent)`` for the summary of a sweep
(``children``: finished :class:`nmf_lab.tracking.stored.StoredRun` s) and ``SETTINGS``, the config nodes of its own
settings (``{"denoise": DenoiseSettings}``). The harness never imports this package; studies share only
:mod:`experiments.shared`.
"""

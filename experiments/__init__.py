"""The studies of the spec, one thin module each: load, fit, measure, draw, log.

A study module has ``run(settings, run)`` for one job (``settings``: :class:`nmf_lab.config.Config`,
``run``: :class:`nmf_lab.tracking.RunLog`) and may have ``summarize(children, parent)`` for the summary of
a sweep (``children``: finished :class:`nmf_lab.sweep.ChildRun` s). ``experiment.study`` picks one by name.
"""

from experiments import benchmark, denoise, images, movies, toy

STUDIES = {
    "toy": toy,
    "movies": movies,
    "images": images,
    "denoise": denoise,
    "benchmark": benchmark,
}

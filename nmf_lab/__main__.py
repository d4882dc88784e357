"""``python -m nmf_lab`` is ``nmf-lab``."""

from nmf_lab.harness.cli import main

main()

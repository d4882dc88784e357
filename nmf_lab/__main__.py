"""``python -m nmf_lab`` is ``nmf-lab``."""

from nmf_lab.cli import main

main()

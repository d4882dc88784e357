"""The error every plug-in (solver option, data loader option) raises for a bad option value."""

from __future__ import annotations


class InvalidOption(ValueError):
    """An option out of its valid range or of the wrong type.

    ``key`` is the option's name as its owner knows it (``n_images``, ``alpha``); the config layer prefixes
    it with the config node (``data.n_images``). The message reads ``key=value: what is valid``.
    """

    def __init__(self, key: str, value, valid: str):
        super().__init__(f"{key}={value!r}: {valid}")
        self.key, self.value, self.valid = key, value, valid

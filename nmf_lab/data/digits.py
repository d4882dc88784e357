"""scikit-learn's bundled 8 x 8 handwritten digits (1797 images, values 0..16): a grayscale image set that
needs no download."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nmf_lab.data.images import ImageSet, check_int, check_subset, select_indices

N_DIGITS = 1797
"""How many images ``sklearn.datasets.load_digits`` has."""
SOURCE = "sklearn.datasets.load_digits"


@dataclass
class Digits:
    """Loader of ``data=digits``: ``n_images`` of the digits as an :class:`ImageSet` (8, 8, 1, n), no alpha.

    Pixel values are the data set's 0..16 divided by 16 (0 is the background, 1 the darkest ink). ``ids``
    are the indices into the 1797 images, ``labels`` the digits (0..9) they show. ``subset`` and
    ``subset_seed`` pick the images as for every image loader (:func:`nmf_lab.data.images.select_indices`).
    """

    n_images: int = N_DIGITS
    subset: str = "first"
    subset_seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_images", self.n_images, 1, N_DIGITS)
        check_subset(self.subset, self.subset_seed)

    def load(self) -> ImageSet:
        from sklearn.datasets import load_digits

        digits = load_digits()
        ids = select_indices(N_DIGITS, self.n_images, self.subset, self.subset_seed)
        images = np.moveaxis(digits.images[ids], 0, -1)[:, :, None, :] / 16.0  # (8, 8, 1, n)
        return ImageSet(images=images, alpha=None, name="digits", source=SOURCE, ids=ids, labels=digits.target[ids])

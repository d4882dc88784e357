"""``nmf-lab-zarr``: write any image set of ``conf/data/`` to a Zarr image store, optionally augmented to N images.

    nmf-lab-zarr punks.zarr data=punks data.n_images=10000
    nmf-lab-zarr punks_1m.zarr data=punks data.n_images=10000 --augment 1000000 --chunk 10000
    nmf-lab-zarr faces.zarr data=image_folder data.folder=~/faces

The image set is composed as the CLI composes it (the same overrides) and loaded once; the store is written
block by block (:func:`nmf_lab.distributed.store.write_blocks`), an augmented one without ever holding more
than one block of the N images (:func:`nmf_lab.distributed.store.augmented_blocks`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate

from nmf_lab.distributed.store import DEFAULT_CHUNK, augmented_blocks, image_blocks, write_blocks
from nmf_lab.harness.config import CONF_DIR, register_configs


def load_image_set(overrides: Sequence[str]):
    """The image set that ``data=...`` overrides select, loaded."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return instantiate(cfg.data).load()


def write_store(path, image_set, *, augment: int | None = None, seed: int = 0, chunk: int = DEFAULT_CHUNK):
    """Write ``image_set`` (or ``augment`` images made from it) to the store ``path``; returns the path."""
    h, w = image_set.shape
    c = image_set.channels
    if augment:
        if c != 3 or image_set.alpha is None:
            raise ValueError("augmenting needs RGB images with an alpha channel (the sprite's frame), like the punks")
        blocks = augmented_blocks(image_set.images, image_set.alpha, augment, seed=seed, chunk=chunk)
        n, alpha = augment, True
    else:
        blocks = image_blocks(image_set.images, image_set.alpha, image_set.ids, chunk)
        n, alpha = image_set.n, image_set.alpha is not None
    name = f"{image_set.name}-augmented" if augment else image_set.name
    return write_blocks(path, blocks, n=n, height=h, width=w, channels=c, name=name, source=image_set.source,
                        chunk=chunk, alpha=alpha)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nmf-lab-zarr", description=__doc__.splitlines()[0])
    parser.add_argument("store", help="the Zarr store to write (replaced if it exists)")
    parser.add_argument("overrides", nargs="*", help="config overrides selecting the image set, e.g. data=punks")
    parser.add_argument("--augment", type=int, default=None, help="write N augmented images instead")
    parser.add_argument("--seed", type=int, default=0, help="the seed of the augmentation")
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="images per chunk (column block)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        image_set = load_image_set(args.overrides)
        path = write_store(args.store, image_set, augment=args.augment, seed=args.seed, chunk=args.chunk)
    except (ValueError, FileNotFoundError, HydraException) as error:
        sys.exit(f"nmf-lab-zarr: {error}")
    n = args.augment or image_set.n
    size = np.prod(image_set.images.shape[:3]) * n * 4 / 1e9
    print(f"wrote {n} images ({size:.2f} GB of float32) to {path} in {time.perf_counter() - start:.1f} s")

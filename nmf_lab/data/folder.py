"""Every PNG or JPEG image of a folder as one image set (``data=image_folder data.folder=DIR``).

The files are ``*.png``, ``*.jpg`` and ``*.jpeg`` (any case) directly in the folder, sorted by file name;
other files and subfolders are ignored. All must have one size. When the loader is constructed it reads
every file's header (not its pixels) and refuses, naming the files, a missing or empty folder, files that
are not readable PNG or JPEG images, and files of another size than the rest.

Channels: when every image is grayscale (Pillow modes 1, L, LA, I;16) the set is grayscale (c = 1);
when any image is in colour (RGB, RGBA, P, PA, CMYK, ...) every image is converted to RGB (c = 3; grey
images become three equal channels), so a folder may mix both. A palette image (P) counts as colour.

Transparency: when any image has an alpha channel (RGBA, LA, PA) or a transparent colour (the PNG tRNS
chunk), the opacity of every image is kept aside as ``alpha`` (1 for images without one), as for the
CryptoPunks; the colour of a fully transparent pixel is set to 0, the colour the spec's model gives the
transparent background. Without any transparency ``alpha`` is None. 8-bit values are divided by 255,
16-bit grayscale by 65535.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nmf_lab.core.errors import InvalidOption
from nmf_lab.data.images import ImageSet, check_int, check_subset, select_indices

SUFFIXES = (".png", ".jpg", ".jpeg")
"""The files a folder's image set is made of (compared in lower case)."""
FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG"}
"""Pillow's format names of the files accepted (MPO: a JPEG with extra frames, as phones write them)."""
GRAY_MODES = ("1", "L", "LA", "I;16", "I;16L", "I;16B")
"""Pillow modes read as grayscale."""
COLOUR_MODES = ("RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "RGBX")
"""Pillow modes read as colour."""
ALPHA_MODES = ("LA", "PA", "RGBA")
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B")
MAX_LISTED = 10
"""Error messages name at most this many files."""


@dataclass(frozen=True)
class FileHeader:
    """What a file's header says: its name, (width, height), Pillow mode, and whether it has transparency."""

    path: Path
    size: tuple[int, int]
    mode: str
    has_alpha: bool


@dataclass
class ImageFolder:
    """Loader of ``data=image_folder``: the images of ``folder`` as an :class:`ImageSet` (see the module).

    Options: ``folder`` (required), ``n_images`` (null: all, else 1..the number of images), ``subset``
    (``first`` | ``random``) and ``subset_seed`` as for every image loader. ``ids`` of the loaded set are
    the indices of the files in the sorted listing, ``labels`` their file names, ``name`` the folder's name.
    """

    folder: str | None = None
    n_images: int | None = None
    subset: str = "first"
    subset_seed: int = 0

    def __post_init__(self) -> None:
        self._headers = scan_folder(self.folder)
        if self.n_images is not None:
            count = len(self._headers)
            try:
                check_int("n_images", self.n_images, 1, count)
            except InvalidOption:
                raise InvalidOption(
                    "n_images", self.n_images, f"must be null (all {count} images) or an integer in 1..{count}"
                ) from None
        check_subset(self.subset, self.subset_seed)

    @property
    def files(self) -> list[Path]:
        """The image files of the folder, sorted by name."""
        return [header.path for header in self._headers]

    @property
    def channels(self) -> int:
        """1 when every image is grayscale, else 3."""
        return 1 if all(header.mode in GRAY_MODES for header in self._headers) else 3

    @property
    def has_alpha(self) -> bool:
        """Whether any image has transparency (then every image's opacity is kept aside)."""
        return any(header.has_alpha for header in self._headers)

    def load(self) -> ImageSet:
        """Read the pixels of the selected files."""
        headers = self._headers
        ids = select_indices(len(headers), self.n_images, self.subset, self.subset_seed)
        size, channels, with_alpha = headers[0].size, self.channels, self.has_alpha
        colours, alphas = [], []
        for i in ids:
            colour, alpha = read_pixels(headers[i].path, size, channels, with_alpha)
            colours.append(colour)
            alphas.append(alpha)
        folder = headers[0].path.parent
        return ImageSet(
            images=np.stack(colours, axis=-1),
            alpha=np.stack(alphas, axis=-1) if with_alpha else None,
            name=folder.name,
            source=str(folder),
            ids=ids,
            labels=np.array([headers[i].path.name for i in ids]),
        )


def scan_folder(folder) -> list[FileHeader]:
    """The headers of the image files of ``folder``, sorted by file name (each file decoded once);
    :class:`InvalidOption` (key ``folder``) for a missing, empty or unreadable folder, unreadable files, or
    files of different sizes."""
    if folder is None or folder == "":
        raise InvalidOption(
            "folder", folder, "required: the folder of PNG or JPEG images, e.g. data.folder=/path/to/images"
        )
    if not isinstance(folder, (str, os.PathLike)):
        raise InvalidOption("folder", folder, "must be the path of a folder (a string)")
    path = Path(folder).expanduser().resolve()
    if not path.exists():
        raise InvalidOption("folder", str(folder), f"no such folder ({path}); expected a folder of PNG or JPEG images")
    if not path.is_dir():
        raise InvalidOption("folder", str(folder), f"{path} is a file, not a folder of PNG or JPEG images")
    try:
        entries = sorted(path.iterdir(), key=lambda entry: entry.name)
    except OSError as error:
        raise InvalidOption("folder", str(folder), f"cannot list {path} ({error})") from error
    files = [entry for entry in entries if entry.suffix.lower() in SUFFIXES and entry.is_file()]
    if not files:
        others = [entry.name for entry in entries]
        found = f"; it holds {_listing(others)}" if others else "; it is empty"
        raise InvalidOption("folder", str(folder), f"no PNG or JPEG files (*.png, *.jpg, *.jpeg) in {path}{found}")
    headers, unreadable = [], []
    for file in files:
        try:
            headers.append(read_header(file))
        except ValueError as error:
            unreadable.append(f"{file.name} ({error})")
    if unreadable:
        raise InvalidOption(
            "folder",
            str(folder),
            f"{len(unreadable)} of the {len(files)} image files in {path} cannot be read as PNG or JPEG images: "
            f"{_listing(unreadable)}. Every *.png, *.jpg and *.jpeg file must be a readable image: fix or remove these",
        )
    sizes = Counter(header.size for header in headers)
    if len(sizes) > 1:
        (width, height), count = sizes.most_common(1)[0]
        odd = [f"{h.path.name} is {h.size[0]} x {h.size[1]}" for h in headers if h.size != (width, height)]
        raise InvalidOption(
            "folder",
            str(folder),
            f"the images in {path} must all have one size: {count} of {len(headers)} are {width} x {height} pixels "
            f"(width x height), but {_listing(odd)}",
        )
    return headers


def read_header(path: Path) -> FileHeader:
    """The header of an image file, whose pixels are decoded once here so that a truncated or corrupt file is
    found before any run; ValueError if it is no readable PNG or JPEG image of a supported pixel format."""
    try:
        with Image.open(path) as image:
            size, mode, kind, info = image.size, image.mode, image.format, dict(image.info)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"not a readable image: {error}") from error
    if kind not in FORMATS:
        raise ValueError(f"a {kind} image, expected PNG or JPEG")
    if mode not in GRAY_MODES and mode not in COLOUR_MODES:
        supported = ", ".join(GRAY_MODES + COLOUR_MODES)
        raise ValueError(f"unsupported pixel format (Pillow mode {mode}); supported: {supported}")
    if 0 in size:
        raise ValueError(f"an empty image ({size[0]} x {size[1]} pixels)")
    return FileHeader(path=path, size=size, mode=mode, has_alpha=mode in ALPHA_MODES or "transparency" in info)


def read_pixels(
    path: Path, size: tuple[int, int], channels: int, with_alpha: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """The colours (h, w, channels) and, with ``with_alpha``, the opacity (h, w) of one file, in [0, 1].

    Colours are Pillow's conversion to L (channels 1) or RGB (channels 3), opacity its conversion to LA or
    RGBA, divided by 255 (16-bit grayscale: by 65535); colours of pixels with opacity 0 are set to 0.
    """
    try:
        with Image.open(path) as image:
            if image.size != size:
                raise ValueError(
                    f"{path} is {image.size[0]} x {image.size[1]} pixels, expected {size[0]} x {size[1]} "
                    f"(the file changed after the folder was checked)"
                )
            if image.mode in SIXTEEN_BIT:
                grey = np.asarray(image, dtype=np.float64) / 65535.0
                colour, alpha = np.repeat(grey[:, :, None], channels, axis=2), None
                if with_alpha:
                    alpha = np.ones(grey.shape)
                    if "transparency" in image.info:
                        alpha[np.asarray(image) == image.info["transparency"]] = 0.0
            else:
                target = ("L" if channels == 1 else "RGB") + ("A" if with_alpha else "")
                pixels = np.asarray(image.convert(target), dtype=np.float64) / 255.0
                if pixels.ndim == 2:
                    pixels = pixels[:, :, None]
                colour, alpha = pixels[:, :, :channels], (pixels[:, :, channels] if with_alpha else None)
    except (OSError, SyntaxError) as error:  # truncated or corrupt image data
        raise ValueError(f"{path} is not a readable image ({error})") from error
    if alpha is not None:
        colour = np.where(alpha[:, :, None] > 0, colour, 0.0)
    return colour, alpha


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")

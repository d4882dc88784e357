"""A learned NMF denoiser: project noisy images onto a fixed basis W and keep what the noise model guarantees.

A :class:`Denoiser` holds one basis ``W`` (m x d, m = h * w * c) or several (an ensemble, whose projections are
averaged), the image shape and whether to post-process. For noisy images ``A_noisy`` (m x n, one per column)
it computes, per basis, the non-negative coefficients ``H = argmin_{H >= 0} ||A_noisy - W H||_F``
(:func:`nmf_lab.core.transform.transform`) and returns ``X = mean_k W_k H_k``, post-processed (:func:`postprocess`).
Images the basis has never seen are denoised the same way as the ones it was fitted to.

Images travel as an array (n, h, w, channels) in [0, 1], like a run's data set: the colour channels, and for
a data set with alpha (the CryptoPunks) a last channel with the opacity. Alpha is not denoised: it says which
pixels are transparent (alpha 0), whose colours post-processing sets to 0, and is returned unchanged.
NumPy only: a model server (:mod:`nmf_lab.tracking.model`) stores the arrays of :meth:`Denoiser.arrays`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from nmf_lab.core.transform import transform


def postprocess(X: np.ndarray, opaque: np.ndarray | None) -> np.ndarray:
    """What the noise model guarantees, applied to a reconstruction X ((h * w * c) x n): values lie in
    [0, 1], and the entries of transparent pixels (``opaque`` False, the same shape as X, see
    :meth:`~nmf_lab.data.images.ImageSet.opaque_entries`) are 0. With ``opaque`` None (no alpha) it only clips.
    Returns a new array."""
    clipped = np.clip(X, 0.0, 1.0)
    return clipped if opaque is None else np.where(opaque, clipped, 0.0)


def model_input(image_set, colours: np.ndarray | None = None) -> np.ndarray:
    """The images of ``image_set`` (an :class:`~nmf_lab.data.images.ImageSet`) as a denoiser takes them:
    float64 (n, h, w, c), or (n, h, w, c + 1) with the set's alpha last. ``colours``: other colours for the
    same images, an m x n matrix (e.g. the noisy ``A_noisy``), instead of the set's own."""
    h, w, c, n = image_set.images.shape
    images = image_set.images if colours is None else np.asarray(colours, dtype=np.float64).reshape(h, w, c, n)
    if image_set.alpha is not None:
        images = np.concatenate([images, image_set.alpha[:, :, None, :]], axis=2)
    return np.ascontiguousarray(images.transpose(3, 0, 1, 2))


ZERO_RULE_ASSUMPTION = (
    "built for noisy images whose zero entries are exact (spec 6.1: Gaussian noise on the non-zero entries only, "
    "clipped to [0, 1]); its zero rule keeps a noisy 0 at 0, which holds only for such input"
)
"""What a denoiser built with the zero rule assumes of its input, in words (its model's description says it)."""

ZERO_RULE_REFUSAL = (
    f"this denoiser was {ZERO_RULE_ASSUMPTION}. Say whether your images follow that noise model: "
    "zero_rule=True (MLflow: params={'zero_rule': True}) applies the rule, zero_rule=False denoises without it"
)
"""The message of a denoiser built with the zero rule that was not told whether its input follows the noise model."""


@dataclass(frozen=True, eq=False)
class Denoiser:
    """Denoise images by projecting them onto learned bases.

    Attributes:
        bases: one or more non-negative float arrays ``W_k`` (m x d_k, m = h * w * c), e.g. the ``W`` of an NMF
            fitted to noisy images; the result is the mean of the projections ``W_k H_k``.
        image_shape: (h, w, c), c = 1 or 3 colour channels; column j of a matrix is the C-order
            reshape of image j (:meth:`~nmf_lab.data.images.ImageSet.matrix`).
        alpha: whether images carry an alpha channel after their colours (input and output).
        postprocess: apply :func:`postprocess` (clip to [0, 1], clear the transparent pixels); without it the
            projection is returned as it is (it may exceed 1 slightly).
        solver, max_iter, tol: the options of :func:`~nmf_lab.core.transform.transform`.
        keep_zeros: the denoiser was built for input whose zero entries are exact: the noise model of spec 6.1
            adds noise only to the non-zero entries, so a noisy 0 is almost always a clean 0, and the *zero rule*
            sets to 0 every entry that is 0 in the noisy input (``experiments.denoise_best``). The rule is wrong
            for any other noise (e.g. noise on every entry, where a 0 is only a clipped negative), so the image
            API applies it only when the caller says the input follows that noise model (``zero_rule=True``),
            and a denoiser built with it refuses to guess (see :meth:`denoise_images`).
    """

    bases: tuple[np.ndarray, ...]
    image_shape: tuple[int, int, int]
    alpha: bool = False
    postprocess: bool = True
    solver: str = "hals"
    max_iter: int = 2000
    tol: float = 1e-7
    keep_zeros: bool = False

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
            raise ValueError(f"image_shape must be (h, w, c) with h, w >= 1 and c = 1 or 3, got {self.image_shape}")
        object.__setattr__(self, "image_shape", shape)
        bases = (self.bases,) if isinstance(self.bases, np.ndarray) else tuple(self.bases)
        if not bases:
            raise ValueError("a denoiser needs at least one basis W")
        m = int(np.prod(shape))
        checked = []
        for k, W in enumerate(bases):
            W = np.array(W, dtype=np.float64)  # a copy: the denoiser is frozen, its arrays too
            if W.ndim != 2 or W.shape[0] != m or W.shape[1] < 1:
                raise ValueError(f"basis {k} must be m x d with m = h * w * c = {m} rows, got shape {W.shape}")
            if not np.isfinite(W).all() or (W < 0).any() or not W.any():
                raise ValueError(f"basis {k} must be finite, non-negative and not all zero")
            W.setflags(write=False)
            checked.append(W)
        object.__setattr__(self, "bases", tuple(checked))

    @classmethod
    def for_images(cls, image_set, bases: np.ndarray | Sequence[np.ndarray], **options) -> Denoiser:
        """The denoiser of images like ``image_set``'s (an :class:`~nmf_lab.data.images.ImageSet`): its shape and
        whether it has alpha. ``options``: the other fields (``postprocess``, ``solver``, ...)."""
        h, w, c, _ = image_set.images.shape
        return cls(bases=bases, image_shape=(h, w, c), alpha=image_set.alpha is not None, **options)

    @property
    def channels(self) -> int:
        """The channels of an input image: the colours, plus one for alpha."""
        return self.image_shape[2] + int(self.alpha)

    def denoise_matrix(
        self, A_noisy: np.ndarray, opaque: np.ndarray | None = None, *, zero_rule: bool | None = None
    ) -> np.ndarray:
        """X = mean_k W_k H_k for noisy images ``A_noisy`` (m x n, entries in [0, 1]), post-processed with
        ``opaque`` (bool m x n, False on transparent pixels; None: all opaque) when :attr:`postprocess` is on,
        and with the zero rule (the entries 0 in ``A_noisy`` set to 0) when ``zero_rule`` is True; None: as
        the denoiser was built (:attr:`keep_zeros`; the caller of this matrix API built it for its data).
        Returns X, m x n float64."""
        zero_rule = self.keep_zeros if zero_rule is None else bool(zero_rule)
        A_noisy = np.asarray(A_noisy, dtype=np.float64)
        X = np.zeros_like(A_noisy)
        for W in self.bases:
            X += W @ transform(A_noisy, W, solver=self.solver, max_iter=self.max_iter, tol=self.tol).H
        X /= len(self.bases)
        X = postprocess(X, opaque) if self.postprocess else X
        return np.where(A_noisy > 0, X, 0.0) if zero_rule else X

    def denoise_images(self, images: np.ndarray, *, zero_rule: bool | None = None) -> np.ndarray:
        """Denoised copies of noisy ``images`` (n, h, w, :attr:`channels`), values in [0, 1], the alpha channel
        (if any) last and returned unchanged. Raises ValueError naming a wrong shape or a value outside [0, 1].

        ``zero_rule``: True when the caller knows the images' zero entries are exact (spec 6.1's noise: zero
        entries get no noise): the entries 0 in ``images`` stay 0. False: no zero rule. None (not said): no
        zero rule for a denoiser built without it; a denoiser built with it (:attr:`keep_zeros`) refuses with a
        ValueError that names its assumption, rather than silently apply it to data it may not hold for (or
        silently drop part of the method it was measured with)."""
        if zero_rule is None:
            if self.keep_zeros:
                raise ValueError(ZERO_RULE_REFUSAL)
            zero_rule = False
        images = np.asarray(images)
        h, w, c = self.image_shape
        expected = (h, w, self.channels)
        if images.ndim != 4 or images.shape[1:] != expected or images.shape[0] == 0:
            layout = f"{c} colour channel{'s' if c > 1 else ''}" + (" and alpha" if self.alpha else "")
            raise ValueError(
                f"images must be an array (n, {h}, {w}, {self.channels}) with n >= 1 ({layout}), got shape "
                f"{images.shape}"
            )
        if images.dtype.kind not in "biuf":
            raise ValueError(f"images must hold numbers in [0, 1], got dtype {images.dtype}")
        images = images.astype(np.float64)
        low, high = float(images.min()), float(images.max())
        if not (low >= 0.0 and high <= 1.0):  # also catches NaN
            raise ValueError(f"images must lie in [0, 1], found values in [{low}, {high}]")
        n = images.shape[0]
        colours = images[..., :c]
        A_noisy = colours.reshape(n, h * w * c).T
        opaque = None
        if self.alpha:
            opaque = np.repeat(images[..., c:] > 0, c, axis=3).reshape(n, h * w * c).T
        X = self.denoise_matrix(A_noisy, opaque, zero_rule=zero_rule)
        out = images.copy()
        out[..., :c] = X.T.reshape(n, h, w, c)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything the denoiser is, as NumPy arrays (for ``np.savez``; read back with :meth:`from_arrays`)."""
        settings = {
            "image_shape": np.array(self.image_shape, dtype=np.int64),
            "alpha": np.array(self.alpha),
            "postprocess": np.array(self.postprocess),
            "solver": np.array(self.solver),
            "max_iter": np.array(self.max_iter, dtype=np.int64),
            "tol": np.array(self.tol, dtype=np.float64),
            "keep_zeros": np.array(self.keep_zeros),
        }
        return {**settings, **{f"W_{k}": W for k, W in enumerate(self.bases)}}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Denoiser:
        """The denoiser that :meth:`arrays` gave, e.g. from ``np.load(path, allow_pickle=False)``."""
        count = sum(1 for key in arrays if key.startswith("W_"))
        return cls(
            bases=tuple(arrays[f"W_{k}"] for k in range(count)),
            image_shape=tuple(int(s) for s in arrays["image_shape"]),
            alpha=bool(arrays["alpha"]),
            postprocess=bool(arrays["postprocess"]),
            solver=str(arrays["solver"]),
            max_iter=int(arrays["max_iter"]),
            tol=float(arrays["tol"]),
            keep_zeros=bool(arrays["keep_zeros"]) if "keep_zeros" in arrays else False,
        )

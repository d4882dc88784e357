"""Data sets of the study, one loader each: a plain dataclass of options with a ``load()`` method.

Image loaders return an :class:`nmf_lab.data.images.ImageSet`: :class:`~nmf_lab.data.punks.Punks`
(CryptoPunks), :class:`~nmf_lab.data.digits.Digits` (scikit-learn's 8 x 8 digits) and
:class:`~nmf_lab.data.folder.ImageFolder` (the PNG and JPEG files of a folder). :class:`~nmf_lab.data.toy.ToyMatrix`
returns one of the small matrices of Task 1 or the movie ratings of section 2.1. ``conf/data/<name>.yaml``
names a loader (``_target_``) and its options.
"""

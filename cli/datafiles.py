"""Reading a user's data file for ``wharf spec fit`` and ``wharf search --data``: a table, a
stack of images or a list of texts, told apart by the file (or named with ``--type``).

- ``.csv``: a numeric table;
- ``.npy``: a table (N × d), or images (N × C × H × W, or N × H × W for one channel);
- ``.txt``: texts, one per line (blank lines skipped);
- ``.json``: texts, a JSON list of strings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wharf.specification import SpecificationError

KINDS = ("auto", "table", "image", "text")


def read_data(path: str | Path, kind: str = "auto") -> tuple[str, Any]:
    """``(kind, data)``: ``"table"`` or ``"image"`` with an array, ``"text"`` with a list."""
    path = Path(path)
    if kind not in KINDS:
        raise SpecificationError(f"unknown data type {kind!r}; use one of {', '.join(KINDS)}")
    suffix = path.suffix.lower()
    if kind == "text" or (kind == "auto" and suffix in (".txt", ".json")):
        return "text", read_texts(path)
    from .tables import read_table  # numpy: not for every wharf command

    data = read_table(path)
    if kind == "auto":
        kind = "image" if data.ndim in (3, 4) else "table"
    if kind == "image" and data.ndim not in (3, 4):
        raise SpecificationError(
            f"{path}: images must have shape N×C×H×W or N×H×W, got {data.shape}"
        )
    return kind, data


def read_texts(path: str | Path) -> list[str]:
    """Texts from a ``.txt`` file (one per line) or a ``.json`` list of strings."""
    path = Path(path)
    if not path.is_file():
        raise SpecificationError(f"{path}: no such file")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecificationError(f"{path}: not UTF-8 text") from None
    if path.suffix.lower() == ".json":
        try:
            texts = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SpecificationError(f"{path}: not valid JSON ({exc.msg})") from None
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise SpecificationError(f"{path}: must hold a JSON list of strings")
    else:
        texts = [line.strip() for line in raw.splitlines() if line.strip()]
    if not texts:
        raise SpecificationError(f"{path}: no texts")
    return texts

"""Reading user data files (``.npy`` and numeric ``.csv``) for ``wharf spec fit``."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from wharf.specification import SpecificationError


def read_table(path: str | Path, drop_column: int | None = None) -> np.ndarray:
    """Load a 2-D numeric table; a CSV may start with one header row. ``drop_column`` (a
    CSV's) is left out before its cells are read: a label, which may not be a number."""
    path = Path(path)
    if not path.is_file():
        raise SpecificationError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise SpecificationError(f"{path}: not a plain numeric .npy array ({exc})") from None
        return arr
    if suffix == ".csv":
        return _read_csv(path, drop_column)
    raise SpecificationError(f"{path}: unsupported file type {suffix!r}; use .npy or .csv")


def _read_csv(path: Path, drop_column: int | None = None) -> np.ndarray:
    rows: list[list[float]] = []
    with path.open(newline="", encoding="utf-8") as fh:
        for lineno, row in enumerate(csv.reader(fh), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if drop_column is not None and drop_column < len(row):
                del row[drop_column]
            try:
                values = [float(cell) if cell.strip() else np.nan for cell in row]
            except ValueError:
                if not rows and lineno == 1:
                    continue  # a header row
                bad = next(c for c in row if c.strip() and not _is_float(c))
                raise SpecificationError(
                    f"{path}:{lineno}: {bad!r} is not a number; the CSV must be numeric "
                    "(one optional header row)"
                ) from None
            if rows and len(values) != len(rows[0]):
                raise SpecificationError(
                    f"{path}:{lineno}: {len(values)} columns, but the first data row has "
                    f"{len(rows[0])}"
                )
            rows.append(values)
    if not rows:
        raise SpecificationError(f"{path}: no data rows")
    return np.array(rows, dtype=np.float64)


def _is_float(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True

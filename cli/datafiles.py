"""Reading a user's data file for ``wharf spec fit`` and ``wharf search --data``: a table, a
stack of images or a list of texts, told apart by the file (or named with ``--type``).

- ``.csv``: a numeric table;
- ``.npy``: a table (N × d), or images (N × C × H × W, or N × H × W for one channel);
- ``.txt``: texts, one per line (blank lines skipped);
- ``.json``: texts, a JSON list of strings.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from wharf.specification import SpecificationError

KINDS = ("auto", "table", "image", "text")


def read_data(path: str | Path, kind: str = "auto", label: str | None = None) -> tuple[str, Any]:
    """``(kind, data)``: ``"table"`` or ``"image"`` with an array, ``"text"`` with a list.
    ``label`` names a CSV's label column, left out of the table."""
    path = Path(path)
    if kind not in KINDS:
        raise SpecificationError(f"unknown data type {kind!r}; use one of {', '.join(KINDS)}")
    suffix = path.suffix.lower()
    if label is not None and (kind not in ("auto", "table") or suffix != ".csv"):
        raise SpecificationError(f"{path}: a label column is left out of a .csv table only")
    if kind == "text" or (kind == "auto" and suffix in (".txt", ".json")):
        return "text", read_texts(path)
    from .tables import read_table  # numpy: not for every wharf command

    data = read_table(path, label_index(path, label) if label is not None else None)
    if kind == "auto":
        kind = "image" if data.ndim in (3, 4) else "table"
    if kind == "image" and data.ndim not in (3, 4):
        raise SpecificationError(
            f"{path}: images must have shape N×C×H×W or N×H×W, got {data.shape}"
        )
    return kind, data


def label_index(path: str | Path, label: str) -> int:
    """Where the column named ``label`` is in a CSV's header."""
    return find_column(read_csv_header(path, MAX_LABELLED_COLUMNS), label, path)


def find_column(header: list[str], label: str, path: str | Path) -> int:
    """The index of the one column of ``header`` named ``label``."""
    found = [i for i, column in enumerate(header) if column == label.strip()]
    if len(found) != 1:
        shown = ", ".join(header[:10]) + (", …" if len(header) > 10 else "")
        said = "no column" if not found else f"{len(found)} columns named"
        raise SpecificationError(f"{path}: {said} {label!r} in the header ({shown})")
    return found[0]


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


#: The most characters of a CSV read to find its header and sniff its first rows.
MAX_HEADER_CHARS = 1 << 20
#: The widest table whose label column is looked up by name.
MAX_LABELLED_COLUMNS = 100_000
#: Data rows read after the header, to check that it is one (and that they fit it).
SNIFF_ROWS = 5


def read_csv_header(path: str | Path, max_columns: int) -> list[str]:
    """The column names of a CSV's header row, reading at most :data:`MAX_HEADER_CHARS`.

    A first row of numbers only is no header (``SpecificationError``), and so are a header
    of more than ``max_columns`` names and first rows with another number of cells.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecificationError(f"{path}: no such file")
    if path.suffix.lower() != ".csv":
        raise SpecificationError(f"{path}: a .csv file with a header row is needed")
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = _first_rows(fh, path, max_columns)
    except UnicodeDecodeError:
        raise SpecificationError(f"{path}: not UTF-8 text") from None
    except csv.Error as exc:
        raise SpecificationError(f"{path}: not a readable CSV ({exc})") from None
    if not rows:
        raise SpecificationError(f"{path}: empty; a header row naming the columns is needed")
    header = [cell.strip() for cell in rows[0]]
    if all(_is_number(cell) for cell in header):
        raise SpecificationError(
            f"{path}: no header row (its first row holds numbers only); add a first row "
            "naming the columns"
        )
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise SpecificationError(
                f"{path}: row {lineno} has {len(row)} cells, but the header names "
                f"{len(header)} columns"
            )
    return header


def _first_rows(fh: Any, path: Path, max_columns: int) -> list[list[str]]:
    """The header and up to :data:`SNIFF_ROWS` rows; the header must fit the bounds, the
    sniffed rows are those read whole within them."""
    budget = [MAX_HEADER_CHARS]

    def lines():
        while budget[0] > 0:
            line = fh.readline(budget[0])
            if not line:
                return
            budget[0] -= len(line)
            yield line

    reader = csv.reader(lines())
    rows: list[list[str]] = []
    for row in reader:
        if not row or all(not cell.strip() for cell in row):
            continue
        if not rows:
            if len(row) > max_columns:
                raise SpecificationError(
                    f"{path}: the header names {len(row)} columns; at most {max_columns} "
                    "can be described"
                )
            if budget[0] <= 0:
                raise SpecificationError(
                    f"{path}: the header row is longer than {MAX_HEADER_CHARS} characters"
                )
        elif budget[0] <= 0:
            break  # this row may be cut short
        rows.append(row)
        if len(rows) > SNIFF_ROWS:
            break
    return rows


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True

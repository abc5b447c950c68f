"""Which tables take part in the heterogeneous market, and the descriptions of their columns.

A learnware (or a user's requirement) takes part when (the reference's rules, with every
column described, which training needs):

- its statistical spec is a table RKME;
- ``Data`` is empty or ``Table``; ``Task`` is empty, ``Classification`` or ``Regression``;
- ``Input.Description`` describes every column, and ``Input.Dimension`` is the RKME's width;
- it is within the map's bounds (:data:`columns.MAX_COLUMNS` columns, descriptions of at most
  :data:`columns.MAX_DESCRIPTION_CHARS` characters, none blank).

Each failure names the field at fault, so a person can fix it (:class:`HeteroInputError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SemanticSpecError
from ..rkme import TABLE_SPEC_TYPE
from ..semantic import SemanticSpec
from .columns import MAX_COLUMNS, MAX_DESCRIPTION_CHARS

TASKS = ("Classification", "Regression")
#: How many undescribed columns a message lists.
_LISTED = 5


class HeteroInputError(SemanticSpecError):
    """A table that cannot take part in the heterogeneous market; ``field`` names why."""


def _semantic(semantic: SemanticSpec | Mapping[str, Any], requirement: bool) -> SemanticSpec:
    if isinstance(semantic, SemanticSpec):
        return semantic
    return SemanticSpec.from_dict(semantic, requirement=requirement)


def check_hetero_input(
    semantic: SemanticSpec | Mapping[str, Any],
    spec_type: str,
    width: int,
    *,
    requirement: bool = False,
) -> list[str]:
    """The descriptions of the ``width`` columns, in order; :class:`HeteroInputError` if
    this table cannot take part.

    ``spec_type`` and ``width`` are those of the table's statistical spec (its RKME's type
    and ``z.shape[1]``); ``requirement`` reads ``semantic`` as a search requirement.
    """
    if spec_type != TABLE_SPEC_TYPE:
        raise HeteroInputError(
            "stat_spec", f"a {TABLE_SPEC_TYPE} is needed, got {spec_type or 'none'}"
        )
    semantic = _semantic(semantic, requirement)
    data = semantic.values("Data")
    if data not in ((), ("Table",)):
        raise HeteroInputError("Data", f"must be empty or Table, got {', '.join(data)}")
    task = semantic.values("Task")
    if task not in ((), *((t,) for t in TASKS)):
        raise HeteroInputError(
            "Task", f"must be empty, Classification or Regression, got {', '.join(task)}"
        )
    if semantic.Input is None:
        raise HeteroInputError(
            "Input", 'describe every column: {"Dimension": d, "Description": {"0": "...", ...}}'
        )
    if semantic.Input.Dimension != width:
        raise HeteroInputError(
            "Input.Dimension",
            f"is {semantic.Input.Dimension}, but the RKME has {width} columns; they must match",
        )
    if width > MAX_COLUMNS:
        raise HeteroInputError(
            "Input.Dimension", f"is {width}; the heterogeneous market takes at most {MAX_COLUMNS}"
        )
    return column_descriptions(semantic, width)


def column_descriptions(semantic: SemanticSpec, width: int) -> list[str]:
    """``Input.Description`` of columns 0 … width−1; an error names the missing ones."""
    given = semantic.Input.Description if semantic.Input is not None else {}
    out: list[str] = []
    missing: list[int] = []
    for i in range(width):
        text = given.get(str(i))
        if text is None or not text.strip():
            missing.append(i)
            continue
        if len(text) > MAX_DESCRIPTION_CHARS:
            raise HeteroInputError(
                f"Input.Description.{i}",
                f"is {len(text)} characters; at most {MAX_DESCRIPTION_CHARS}",
            )
        out.append(text)
    if missing:
        listed = ", ".join(map(str, missing[:_LISTED])) + (", …" if len(missing) > _LISTED else "")
        raise HeteroInputError(
            "Input.Description",
            f"{len(missing)} of {width} columns have no description (columns {listed}); "
            "the heterogeneous market needs a non-blank one for every column",
        )
    return out


def hetero_problem(
    semantic: SemanticSpec | Mapping[str, Any],
    spec_type: str,
    width: int,
    *,
    requirement: bool = False,
) -> HeteroInputError | None:
    """Why this table cannot take part in the heterogeneous market; ``None`` if it can."""
    try:
        check_hetero_input(semantic, spec_type, width, requirement=requirement)
    except HeteroInputError as exc:
        return exc
    return None

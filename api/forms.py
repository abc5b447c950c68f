"""Parsing the JSON fields of multipart forms into validated domain objects (422 on error)."""

from __future__ import annotations

import json
from typing import Any

from specification.errors import SemanticSpecError
from specification.semantic import SemanticSpec, check_semantic_spec, check_text_lengths

from .problems import Problem


def semantic_spec_field(text: str, *, requirement: bool = False) -> dict[str, Any]:
    """The ``semantic_spec`` form field: a submission's spec (every rule applies) or a search
    requirement (fields may be empty, classes may list alternatives); either with its Name and
    Description within the market's bounds."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Problem(
            422,
            f"semantic_spec is not valid JSON: {exc.msg} at column {exc.colno}",
            field="semantic_spec",
        ) from None
    try:
        if requirement:
            spec = SemanticSpec.from_dict(data, requirement=True)
        else:
            spec = check_semantic_spec(data)
        check_text_lengths(spec, requirement=requirement)
    except SemanticSpecError as exc:
        raise Problem(422, f"semantic_spec.{exc}", field=f"semantic_spec.{exc.field}") from None
    return data

"""Parsing the JSON fields of multipart forms into validated domain objects (422 on error)."""

from __future__ import annotations

import json
from typing import Any

from wharf.market.catalog.storable import UNSTORABLE_TEXT, first_unstorable
from wharf.specification.errors import SemanticSpecError
from wharf.specification.semantic import SemanticSpec, check_semantic_spec, check_text_lengths

from .problems import Problem


def semantic_spec_field(text: str, *, requirement: bool = False) -> dict[str, Any]:
    """The ``semantic_spec`` form field: a submission's spec (every rule applies) or a search
    requirement (fields may be empty, classes may list alternatives); either with its Name and
    Description within the market's bounds.

    What is kept is the spec's canonical form: the keys the market knows, in their canonical
    shapes. Unknown keys are dropped (they are bounded by no rule, and one nested a few
    hundred levels deep would break every answer that lists the learnware)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Problem(
            422,
            f"semantic_spec is not valid JSON: {exc.msg} at column {exc.colno}",
            field="semantic_spec",
        ) from None
    except RecursionError:
        raise Problem(
            422,
            "semantic_spec is nested too deeply to be a semantic specification",
            field="semantic_spec",
        ) from None
    try:
        if requirement:
            spec = SemanticSpec.from_dict(data, requirement=True)
        else:
            spec = check_semantic_spec(data)
        check_text_lengths(spec, requirement=requirement)
    except SemanticSpecError as exc:
        field = exc.field if exc.field == "semantic_spec" else f"semantic_spec.{exc.field}"
        raise Problem(422, f"{field}: {exc.reason}", field=field) from None
    canonical = spec.to_dict()
    bad = first_unstorable(canonical, "semantic_spec")
    if bad is not None:
        raise Problem(422, f"{bad}: {UNSTORABLE_TEXT}", field=bad)
    return canonical

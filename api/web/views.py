"""What the templates show of a learnware, a search result and the vocabulary: plain values
built from catalog rows, bounded so that a learnware with ten thousand feature descriptions
still makes a page of reasonable size."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wharf.market.catalog import Learnware, repo

#: Feature descriptions listed on a page at most (the rest are counted).
MAX_FEATURES_SHOWN = 200
#: Characters of a description on the browse page.
CARD_DESCRIPTION_CHARS = 280
TAG_KEYS = ("Data", "Task", "Library", "Scenario", "License")
SPEC_KINDS = {
    "RKMETableSpecification": "table RKME",
    "RKMEImageSpecification": "image RKME",
    "RKMETextSpecification": "text RKME",
}


@dataclass
class IoSide:
    dimension: int | None
    features: list[tuple[str, str]] = field(default_factory=list)
    more: int = 0


@dataclass
class Card:
    id: str
    name: str
    description: str
    tags: list[tuple[str, str]]
    spec: str
    status: str


def tags(semantic: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, value) of every tag of the vocabulary keys, in a fixed order."""
    out = []
    for key in TAG_KEYS:
        values = (semantic.get(key) or {}).get("Values") or []
        if isinstance(values, str):
            values = [values]
        out.extend((key, str(v)) for v in values if isinstance(v, str))
    return out


def spec_line(lw: Learnware) -> str:
    """ "table RKME · K = 100 · 64 features · γ = 0.1", or "" without a spec."""
    if not lw.spec_type:
        return ""
    parts = [SPEC_KINDS.get(lw.spec_type, lw.spec_type)]
    if lw.spec_points:
        parts.append(f"K = {lw.spec_points}")
    shape = list(lw.spec_shape or [])
    if len(shape) == 1:
        parts.append(f"{shape[0]} features")
    elif shape:
        parts.append("points of " + "×".join(map(str, shape)))
    if lw.spec_gamma is not None:
        parts.append(f"γ = {lw.spec_gamma:g}")
    return " · ".join(parts)


def card(lw: Learnware) -> Card:
    description = (lw.description or "").strip()
    if len(description) > CARD_DESCRIPTION_CHARS:
        description = description[: CARD_DESCRIPTION_CHARS - 1].rstrip() + "…"
    return Card(
        id=repo.format_id(lw.id),
        name=lw.name or "(no name)",
        description=description,
        tags=tags(lw.semantic_spec or {}),
        spec=spec_line(lw),
        status=str(lw.status),
    )


def io_side(semantic: dict[str, Any], key: str) -> IoSide | None:
    """The ``Input`` or ``Output`` of a semantic spec: its dimension and its feature
    descriptions in index order; ``None`` when the spec has none."""
    part = semantic.get(key)
    if not isinstance(part, dict):
        return None
    dimension = part.get("Dimension")
    described = part.get("Description") or {}
    if not isinstance(described, dict):
        described = {}
    rows = sorted(
        ((str(k), str(v)) for k, v in described.items()),
        key=lambda kv: (0, int(kv[0])) if kv[0].isdigit() else (1, kv[0]),
    )
    return IoSide(
        dimension=dimension if isinstance(dimension, int) else None,
        features=rows[:MAX_FEATURES_SHOWN],
        more=max(0, len(rows) - MAX_FEATURES_SHOWN),
    )


def snippets(base_url: str, learnware_id: str) -> dict[str, str]:
    """Ready-to-copy downloads with the CLI, Wharf's Python SDK and the reference client."""
    filename = f"learnware-{learnware_id}.zip"
    return {
        "cli": f"export WHARF_URL={base_url}\nwharf download {learnware_id} -o {filename}",
        "sdk": (
            "from wharf import WharfClient\n\n"
            f'client = WharfClient("{base_url}")\n'
            f'client.download("{learnware_id}", "{filename}")'
        ),
        "reference": (
            "import os\n\n"
            f'os.environ["LEARNWARE_BACKEND_HOST"] = "{base_url}/api"\n'
            "from learnware.client import LearnwareClient\n\n"
            "client = LearnwareClient()\n"
            f'client.download_learnware("{learnware_id}", "{filename}")'
        ),
    }

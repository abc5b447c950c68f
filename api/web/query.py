"""The browse page's query string, read strictly: values from the vocabulary, bounded text and
page numbers, so a hostile link costs one small, indexed query at most."""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlencode

from starlette.datastructures import QueryParams
from wharf.market.catalog import repo
from wharf.specification.semantic import MAX_REQUIREMENT_NAME_CHARS, VOCABULARIES

from .render import PageError

#: Query parameter → vocabulary key of the filters.
FILTERS = {
    "data": "Data",
    "task": "Task",
    "library": "Library",
    "scenario": "Scenario",
    "license": "License",
}
PAGE_SIZES = (10, 20, 50, 100)
DEFAULT_PAGE_SIZE = 20
_KNOWN = {*FILTERS, "q", "page", "per_page"}


@dataclass(frozen=True)
class BrowseQuery:
    q: str = ""
    data: str = ""
    task: str = ""
    library: str = ""
    license: str = ""
    scenario: tuple[str, ...] = ()
    page: int = 1
    per_page: int = DEFAULT_PAGE_SIZE

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def filtered(self) -> bool:
        return bool(self.q or self.data or self.task or self.library or self.license) or bool(
            self.scenario
        )

    def url(self, **changes: object) -> str:
        """This query's URL with ``changes`` (a new filter starts again at page 1)."""
        query = replace(self, **changes)  # type: ignore[arg-type]
        pairs: list[tuple[str, str | int]] = [
            (key, getattr(query, key)) for key in ("q", "data", "task", "library", "license")
        ]
        pairs += [("scenario", tag) for tag in query.scenario]
        if query.per_page != DEFAULT_PAGE_SIZE:
            pairs.append(("per_page", query.per_page))
        if query.page != 1:
            pairs.append(("page", query.page))
        text = urlencode([(k, v) for k, v in pairs if v != ""])
        return "/?" + text if text else "/"


def parse(params: QueryParams) -> BrowseQuery:
    """The query, or a 422 page naming the parameter that is wrong and what it may be."""
    for key in params:
        if key not in _KNOWN:
            raise PageError(
                422, f"Unknown parameter {key[:40]!r}: use {', '.join(sorted(_KNOWN))}."
            )
        if key != "scenario" and len(params.getlist(key)) > 1:
            raise PageError(422, f"Parameter {key!r} is given more than once.")
    values: dict[str, object] = {}
    q = params.get("q", "").strip()
    if len(q) > MAX_REQUIREMENT_NAME_CHARS:
        raise PageError(422, f"The search text is at most {MAX_REQUIREMENT_NAME_CHARS} characters.")
    values["q"] = q
    for key, vocabulary in FILTERS.items():
        allowed = VOCABULARIES[vocabulary]
        given = [v for v in params.getlist(key) if v != ""]
        if len(given) > len(allowed) or any(v not in allowed for v in given):
            raise PageError(
                422,
                f"{key!r} must be one of the market's {vocabulary} values: {', '.join(allowed)}.",
            )
        if key == "scenario":
            values[key] = tuple(dict.fromkeys(given))
        elif given:
            values[key] = given[0]
    per_page = _integer(params, "per_page", DEFAULT_PAGE_SIZE)
    if per_page not in PAGE_SIZES:
        raise PageError(422, f"per_page must be one of {', '.join(map(str, PAGE_SIZES))}.")
    page = _integer(params, "page", 1)
    last = repo.MAX_ID // per_page
    if not 1 <= page <= last:
        raise PageError(422, f"page must be between 1 and {last}.")
    return BrowseQuery(page=page, per_page=per_page, **values)  # type: ignore[arg-type]


def _integer(params: QueryParams, key: str, default: int) -> int:
    text = params.get(key)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise PageError(422, f"{key} must be a whole number.")
    return int(text)

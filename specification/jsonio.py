"""JSON in and out through orjson, with ``json``'s behaviour where orjson differs.

Used for spec files (long lists of floats) and the catalog's JSON columns.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def load_json(text: str | bytes, **json_options: Any) -> Any:
    """``json.loads``, through orjson (several times faster on the long float lists of specs).

    Whatever orjson refuses (NaN, integers past 64 bits, invalid text) is parsed again by
    ``json`` with ``json_options``, so results and error messages are ``json``'s."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, **json_options)


def dump_json(value: Any) -> str:
    """``json.dumps``, through orjson (compact; NaN and infinities become ``null``).

    What orjson refuses (integers past 64 bits, keys that are not str, int, float or bool)
    goes to ``json``."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)

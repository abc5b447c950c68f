"""Logging for every Wharf process: readable text by default, one JSON object per line with
``WHARF_LOG_FORMAT=json`` (what log collectors want). Log calls pass the ids they concern as
``extra={"job_id": …, "learnware_id": …}``; the JSON lines carry them as fields.
"""

from __future__ import annotations

import logging

from pythonjsonlogger.json import JsonFormatter

from .settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def formatter(settings: Settings) -> logging.Formatter:
    if settings.log_format == "json":
        return JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)


def configure(settings: Settings, logger: logging.Logger | None = None) -> None:
    """Give ``logger`` (the root logger by default) one stderr handler in the chosen format;
    handlers already there (Celery's, uvicorn's) get the format too."""
    target = logger or logging.getLogger()
    fmt = formatter(settings)
    if not target.handlers:
        target.addHandler(logging.StreamHandler())
    for handler in target.handlers:
        handler.setFormatter(fmt)
    target.setLevel(settings.log_level.upper())

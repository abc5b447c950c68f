"""The submission checker: decides whether a submitted learnware is accepted.

:func:`check_submission` reads the package without running it, checks the semantic and
statistical specifications (:mod:`.specs`), installs missing requirements into a cached
environment, runs the model in the sandbox (:mod:`wharf.sandbox`, configured from the
settings by :mod:`.sandboxing`) on inputs of its kind, judges what it returned
(:mod:`.judging`), and returns a :class:`CheckReport` with a log the owner can read.
"""

from importlib import import_module
from typing import Any

# Imported on first use: ``unavailable_reason`` (wharf up asks it before it starts anything)
# needs neither numpy nor torch, which the check itself loads.
_EXPORTS = {
    "N_INPUTS": ".submission",
    "CheckLog": "wharf.sandbox.log",
    "CheckReport": ".submission",
    "SandboxUnavailable": "wharf.sandbox.runner",
    "check_submission": ".submission",
    "install_options": ".sandboxing",
    "sandbox_limits": ".sandboxing",
    "unavailable_reason": ".sandboxing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

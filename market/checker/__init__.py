"""The submission checker: decides whether a submitted learnware is accepted.

:func:`check_submission` reads the package without running it, checks the semantic and
statistical specifications (:mod:`.specs`), installs missing requirements into a cached
environment, runs the model in the sandbox (:mod:`wharf.sandbox`, configured from the
settings by :mod:`.sandboxing`) on inputs of its kind, judges what it returned
(:mod:`.judging`), and returns a :class:`CheckReport` with a log the owner can read.
"""

from wharf.sandbox.log import CheckLog
from wharf.sandbox.runner import SandboxUnavailable

from .sandboxing import install_options, sandbox_limits, unavailable_reason
from .submission import N_INPUTS, CheckReport, check_submission

__all__ = [
    "N_INPUTS",
    "CheckLog",
    "CheckReport",
    "SandboxUnavailable",
    "check_submission",
    "install_options",
    "sandbox_limits",
    "unavailable_reason",
]

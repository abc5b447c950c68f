"""The submission checker: decides whether a submitted learnware is accepted.

:func:`check_submission` reads the package without running it, checks the semantic and
statistical specifications, installs missing requirements into a cached environment, runs the
model in a bubblewrap sandbox (:mod:`.sandbox`) on pseudo-samples herded from the learnware's
own RKME, checks the outputs, and returns a :class:`CheckReport` with a log the owner can read.

``shim/`` is not a Python package of the worker: it holds the ``learnware`` compatibility
package that is bound into the sandbox only.
"""

from .log import CheckLog
from .submission import N_INPUTS, CheckReport, check_submission

__all__ = ["N_INPUTS", "CheckLog", "CheckReport", "check_submission"]

"""Keeping numpy/scipy's BLAS on one thread where Wharf parallelises itself.

The fit and the MMD engine spread their work over the cores with torch and a thread pool. A
multi-threaded OpenBLAS call in between (a small Cholesky in the QP, say) leaves its threads
spinning, and they then compete with torch's for the same cores: on a loaded 2-core machine a
2,000-row fit went from 30 ms to 190 ms that way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import ThreadpoolController

_controller: ThreadpoolController | None = None
_lock = threading.Lock()


def _get() -> ThreadpoolController:
    global _controller
    with _lock:
        if _controller is None:
            _controller = ThreadpoolController()  # scans the loaded libraries: slow, once
        return _controller


_local = threading.local()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within this block numpy/scipy BLAS calls use one thread.

    Nested blocks in one thread cost nothing: only the outermost one sets the limit (setting
    it takes tens of microseconds, as much as a small QP solve).
    """
    if getattr(_local, "depth", 0):
        _local.depth += 1
        try:
            yield
        finally:
            _local.depth -= 1
        return
    with _get().limit(limits=1, user_api="blas"):
        _local.depth = 1
        try:
            yield
        finally:
            _local.depth = 0

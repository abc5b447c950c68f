"""Building a learnware's model inside the calling process (``Learnware(sandbox=False)``).

This runs the package's code with every right of the caller: it is only used when the user
asks for it. Each package is imported under its own package name, so two learnwares loaded in
one process cannot see each other's modules, and relative imports inside a package work. A
model written against the reference (``from learnware.model import BaseModel``) finds the
sandbox's small ``learnware`` stand-in while it is being imported, unless a real ``learnware``
package is installed; the stand-in is taken off ``sys.path`` again afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wharf.sandbox._child import load_model_module
from wharf.sandbox.modelrun import SHIM
from wharf.specification.package import ModelEntry

_IMPORT_LOCK = threading.Lock()
_PREFIX = "_wharf_learnware_"


def build_model(package_dir: Path, model: ModelEntry) -> tuple[Any, str]:
    """Import the model's class from ``package_dir``, construct it with the manifest's
    kwargs, and return it with the package name it was imported under."""
    name = f"{_PREFIX}{uuid.uuid4().hex[:16]}"
    with _IMPORT_LOCK, _reference_stand_in():
        try:
            module = load_model_module(str(package_dir), model.file, name)
            try:
                cls = getattr(module, model.class_name)
            except AttributeError:
                raise AttributeError(f"{model.file} defines no {model.class_name!r}") from None
        except BaseException:
            forget_modules(name)
            raise
    return cls(**model.kwargs), name


def forget_modules(name: str) -> None:
    """Drop the modules imported for the package ``name`` from ``sys.modules``."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@contextmanager
def _reference_stand_in() -> Iterator[None]:
    """Make ``import learnware`` find the sandbox's stand-in while the block runs, if no
    ``learnware`` package is installed; leave ``sys.path`` and ``sys.modules`` as they were."""
    if importlib.util.find_spec("learnware") is not None:
        yield
        return
    entry = str(SHIM)
    sys.path.append(entry)
    try:
        yield
    finally:
        if entry in sys.path:
            sys.path.remove(entry)
        for key in [k for k in sys.modules if k == "learnware" or k.startswith("learnware.")]:
            origin = getattr(sys.modules[key], "__file__", None) or ""
            if Path(origin).resolve().is_relative_to(SHIM.resolve()):
                del sys.modules[key]
        sys.path_importer_cache.pop(entry, None)

"""Reading what a sandboxed model run sent back (``result.json``, ``outputs.npy``).

Everything under the output directory came from untrusted code: files are opened without
following links, must be regular files under a size cap, ``result.json`` is plain JSON and
``outputs.npy`` is read with ``allow_pickle=False`` as a single ``.npy`` array whose header
must describe the bytes that follow it. Judging the outputs against a semantic spec is the
checker's (:mod:`wharf.market.checker.judging`).
"""

from __future__ import annotations

import io
import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

RESULT_FILE = "result.json"
OUTPUTS_FILE = "outputs.npy"
MAX_RESULT_BYTES = 1024 * 1024


class OutputFileError(ValueError):
    """A file in the output directory that cannot be read safely."""


@dataclass(frozen=True)
class RunOutput:
    result: dict[str, Any]
    outputs: np.ndarray | None


def read_run_output(out_dir: Path, max_output_bytes: int) -> RunOutput:
    """``result.json`` and, if present, ``outputs.npy``; :class:`OutputFileError` if bad."""
    raw = read_capped(out_dir / RESULT_FILE, MAX_RESULT_BYTES)
    if raw is None:
        raise OutputFileError(f"no {RESULT_FILE} was written")
    try:
        result = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise OutputFileError(f"{RESULT_FILE} is not valid JSON ({exc})") from None
    if not isinstance(result, dict):
        raise OutputFileError(f"{RESULT_FILE} is not a JSON object")
    if result.get("status") != "ok":
        return RunOutput(result, None)  # whatever else is there does not matter
    data = read_capped(out_dir / OUTPUTS_FILE, max_output_bytes + 4096)  # + the .npy header
    outputs = None
    if data is not None:
        try:
            _check_npy_header(data)
            outputs = np.lib.format.read_array(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise OutputFileError(f"{OUTPUTS_FILE} is not a readable .npy array ({exc})") from None
    return RunOutput(result, outputs)


def _check_npy_header(data: bytes) -> None:
    """Refuse a ``.npy`` whose header describes other than the bytes that follow it: numpy
    allocates the array the header declares before reading, so a header of a few bytes
    could ask the worker for terabytes."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"format version {version[0]}.{version[1]} is not read here")
    if dtype.hasobject:
        raise ValueError("Object arrays cannot be loaded when allow_pickle=False")
    if any(n < 0 for n in shape):
        raise ValueError(f"its header declares shape {shape}: negative dimensions are not allowed")
    declared = math.prod(shape) * dtype.itemsize
    held = len(data) - stream.tell()
    if declared != held:
        raise ValueError(
            f"its header declares shape {shape} of {dtype} ({declared} bytes), but "
            f"{held} bytes follow it"
        )


def read_capped(path: Path, cap: int) -> bytes | None:
    """The bytes of a regular file (never through a link, FIFO or device); ``None`` if it
    does not exist; :class:`OutputFileError` if it is no regular file or exceeds ``cap``."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputFileError(f"{path.name} cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise OutputFileError(f"{path.name} is not a regular file")
        if info.st_size > cap:
            raise OutputFileError(f"{path.name} is {info.st_size} bytes, over the {cap}-byte cap")
        data = f.read(cap + 1)
    if len(data) > cap:
        raise OutputFileError(f"{path.name} is over the {cap}-byte cap")
    return data

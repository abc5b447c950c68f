"""Reading what the sandboxed model wrote, and checking it (reference §5.4, made stricter).

Everything under the output directory was written by untrusted code: files are opened
without following links, must be regular files under a size cap, ``result.json`` is plain
JSON and ``outputs.npy`` is read with ``allow_pickle=False`` as a single ``.npy`` array.
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
from wharf.specification.semantic import SemanticSpec

from .log import CheckLog

RESULT_FILE = "result.json"
OUTPUTS_FILE = "outputs.npy"
MAX_RESULT_BYTES = 1024 * 1024
#: Tasks whose outputs must have a declared shape (the reference's rule).
SHAPED_TASKS = ("Classification", "Regression", "Feature Extraction")


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


def check_model_shapes(result: dict[str, Any], semantic: SemanticSpec, log: CheckLog) -> bool:
    """The model's declared ``input_shape`` must be ``(Input.Dimension,)`` for a table and
    the shape of one image (positive ints) for images; a text model's may be anything."""
    input_shape = result.get("input_shape")
    if semantic.data_type == "Image":
        if not (isinstance(input_shape, list) and input_shape and all(d > 0 for d in input_shape)):
            log.fail(
                f"model.input_shape is {_show(input_shape)}: an image model must declare the "
                "shape of one image as a tuple of positive ints, such as (3, 32, 32)"
            )
            return False
        log.ok(f"model.input_shape {_show(input_shape)}: the shape of the probe images")
    elif semantic.data_type == "Text":
        log.info(f"model.input_shape is {_show(input_shape)} (a text model takes strings)")
    else:
        expected = [semantic.input_dim]
        if input_shape != expected:
            log.fail(
                f"model.input_shape is {_show(input_shape)} but the semantic Input.Dimension "
                f"is {semantic.input_dim}, so it must be ({semantic.input_dim},)"
            )
            return False
        log.ok(f"model.input_shape {_show(input_shape)} matches Input.Dimension")
    output_shape = result.get("output_shape")
    if isinstance(output_shape, str):
        log.fail(f"model.output_shape must be a tuple of ints or None, got {output_shape}")
        return False
    return True


def check_outputs(run: RunOutput, semantic: SemanticSpec, n_inputs: int, log: CheckLog) -> bool:
    """The reference's output rules, plus: outputs are finite numbers, and class labels are
    integer-valued."""
    result, outputs = run.result, run.outputs
    task = semantic.task_type
    output_shape = result.get("output_shape")
    if outputs is None:
        problem = result.get("output_problem", "no outputs were written")
        length = result.get("output_len")
        if task in SHAPED_TASKS or output_shape is not None or length != n_inputs:
            log.fail(f"predict returned {result.get('output_type', '?')}: {problem}")
            return False
        log.warn(
            f"predict returned {result.get('output_type')} ({problem}); only its length "
            f"({length}) could be checked, which is right for a {task} learnware"
        )
        return True
    if outputs.dtype.kind not in "biuf":
        log.fail(f"outputs must be numbers, got dtype {outputs.dtype}")
        return False
    if outputs.ndim == 0 or len(outputs) != n_inputs:
        got = "a scalar" if outputs.ndim == 0 else f"{len(outputs)} outputs"
        log.fail(
            f"predict was given {n_inputs} inputs and returned {got}; it must return one "
            "output per input"
        )
        return False
    if not np.isfinite(outputs).all():
        bad = int(np.size(outputs) - np.isfinite(outputs).sum())
        log.fail(f"outputs contain {bad} NaN or infinite value(s); every output must be finite")
        return False
    if outputs.ndim == 1:
        outputs = outputs.reshape(n_inputs, 1)
    if task in SHAPED_TASKS or output_shape is not None:
        if output_shape is None:
            log.fail(f"a {task} model must declare output_shape; it is None")
            return False
        if list(outputs.shape[1:]) != output_shape:
            log.fail(
                f"each output has shape {tuple(outputs.shape[1:])} but model.output_shape "
                f"is {_show(output_shape)}"
            )
            return False
    out_dim = semantic.output_dim
    if task == "Regression" and output_shape[0] != out_dim:
        log.fail(
            f"model.output_shape {_show(output_shape)} does not match the semantic "
            f"Output.Dimension {out_dim}: a regression output_shape[0] must equal it"
        )
        return False
    if task == "Classification":
        if output_shape[0] == 1:
            labels = outputs.reshape(-1).astype(np.float64)
            valid = (labels == np.round(labels)) & (labels >= 0) & (labels < out_dim)
            if labels.size == 0 or not valid.all():
                shown = ""
                if labels.size:
                    shown = f"; got values from {labels.min():g} to {labels.max():g}"
                log.fail(
                    f"outputs are class labels (output_shape {_show(output_shape)}) but not all "
                    f"are integers in [0, {out_dim}) (Output.Dimension {out_dim}){shown}"
                )
                return False
        elif output_shape[0] != out_dim:
            log.fail(
                f"outputs are class scores of width {output_shape[0]} but the semantic "
                f"Output.Dimension is {out_dim}; they must be equal"
            )
            return False
    log.ok(
        f"predict returned {n_inputs} finite outputs of shape {tuple(outputs.shape[1:])}, "
        f"consistent with the {task} task"
    )
    return True


def _show(shape: Any) -> str:
    if isinstance(shape, list):
        return str(tuple(shape))
    return str(shape)

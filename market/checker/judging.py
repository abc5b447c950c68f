"""Judging what a model returned in the sandbox against its semantic specification
(reference §5.4, made stricter): the shapes it declares, and its outputs on the probe inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from wharf.sandbox.log import CheckLog
from wharf.sandbox.outputs import RunOutput
from wharf.specification.semantic import SemanticSpec

#: Tasks whose outputs must have a declared shape (the reference's rule).
SHAPED_TASKS = ("Classification", "Regression", "Feature Extraction")


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

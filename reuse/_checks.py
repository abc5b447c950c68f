"""Input validation shared by the reuse estimators, and collecting learnware outputs.

A *learnware* here is anything with ``predict(X)``; :class:`reuse.runner.Learnware` is one,
and so is any in-memory object with that method. Every error names the argument and the shape
that was expected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def check_learnwares(learnwares: Any, *, need_spec: bool = False) -> list[Any]:
    """``learnwares`` as a non-empty list of objects with ``predict`` (and ``spec``)."""
    if (
        learnwares is None
        or isinstance(learnwares, str | bytes)
        or not hasattr(learnwares, "__iter__")
    ):
        raise TypeError(
            f"learnwares must be a list of learnwares (objects with .predict(X)), got "
            f"{type(learnwares).__name__}"
        )
    items = list(learnwares)
    if not items:
        raise ValueError("learnwares is empty; give at least one learnware")
    for i, lw in enumerate(items):
        if not callable(getattr(lw, "predict", None)):
            raise TypeError(f"learnwares[{i}] ({type(lw).__name__}) has no predict(X) method")
        if need_spec:
            spec = getattr(lw, "spec", None)
            if spec is None or not all(hasattr(spec, a) for a in ("z_", "beta_", "gamma")):
                raise ValueError(
                    f"learnwares[{i}] ({name(lw, i)}) has no RKME in .spec (an object with "
                    "z_, beta_ and gamma); JobSelector needs one per learnware"
                )
    return items


def name(lw: Any, index: int) -> str:
    """How errors refer to a learnware: its id if it has one, else its position."""
    lw_id = getattr(lw, "id", None)
    return f"id {lw_id!r}" if lw_id is not None else f"learnware {index}"


def expected_width(learnwares: Sequence[Any]) -> int | None:
    """The number of input features the learnwares declare (``input_shape`` or the width of
    their RKME), ``None`` if none declares it; an error if they disagree."""
    widths: dict[int, int] = {}
    for i, lw in enumerate(learnwares):
        shape = getattr(lw, "input_shape", None)
        if shape is None and getattr(lw, "spec", None) is not None:
            z = getattr(lw.spec, "z_", None)
            shape = None if z is None else np.shape(z)[1:]
        if shape is not None:
            widths[i] = math.prod(int(s) for s in shape)
    if len(set(widths.values())) > 1:
        shown = ", ".join(f"learnwares[{i}]: {w}" for i, w in widths.items())
        raise ValueError(f"learnwares expect inputs of different widths ({shown})")
    return next(iter(widths.values()), None)


def check_X(
    X: Any, *, n_features: int | None = None, allow_nan: bool = False, what: str = "learnwares"
) -> np.ndarray:
    """``X`` as a float64 array of shape (n_samples, n_features)."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):
        X = X.detach().cpu().numpy()
    try:
        arr = np.asarray(X)
    except ValueError as exc:
        raise ValueError(
            f"X must be an array of shape (n_samples, n_features); it cannot be: {exc}"
        ) from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"X must hold numbers; got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(
            f"X must be a 2-D array of shape (n_samples, n_features); got shape {arr.shape}"
            + (" (reshape a single sample with X.reshape(1, -1))" if arr.ndim == 1 else "")
        )
    if arr.shape[0] == 0:
        raise ValueError(f"X must have at least one sample; got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(
            f"X has {arr.shape[1]} features, but the {what} expect {n_features}: X must have "
            f"shape (n_samples, {n_features})"
        )
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not allow_nan and not np.isfinite(arr).all():
        raise ValueError("X contains NaN or infinite values")
    return arr


def check_y(y: Any, n_samples: int, *, numeric: bool = True) -> np.ndarray:
    """``y`` with one entry (or row) per sample."""
    if y is None:
        raise ValueError("y is required: this method learns from a little labelled data")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim not in (1, 2) or arr.shape[0] != n_samples:
        raise ValueError(
            f"y must have shape (n_samples,) or (n_samples, n_outputs) with n_samples = "
            f"{n_samples} (the rows of X); got shape {arr.shape}"
        )
    if numeric and arr.dtype.kind not in "biuf":
        raise ValueError(f"y must hold numbers; got dtype {arr.dtype}")
    if numeric and not np.isfinite(arr.astype(np.float64)).all():
        raise ValueError("y contains NaN or infinite values")
    return arr


def check_class_indices(y: np.ndarray) -> np.ndarray:
    """Class labels as the integer indices 0 … C−1 that learnwares' outputs refer to."""
    if y.ndim != 1:
        raise ValueError(f"y must be a 1-D array of class labels; got shape {y.shape}")
    values = y.astype(np.float64) if y.dtype.kind in "biuf" else None
    if values is None or (values != np.round(values)).any() or (values < 0).any():
        raise ValueError(
            "y must hold the integer class indices the learnwares predict (0, 1, …, C-1); "
            f"got values such as {y[:3].tolist()}"
        )
    return values.astype(np.int64)


def collect_outputs(learnwares: Sequence[Any], X: np.ndarray) -> list[np.ndarray]:
    """Each learnware's outputs on ``X`` as a 2-D float array (n_samples, n_columns)."""
    results = []
    for i, lw in enumerate(learnwares):
        raw = lw.predict(X)
        if hasattr(raw, "detach") and hasattr(raw, "cpu"):
            raw = raw.detach().cpu().numpy()
        out = np.asarray(raw)
        if out.dtype.kind not in "biuf":
            raise ValueError(f"{name(lw, i)} returned non-numeric outputs (dtype {out.dtype})")
        if out.ndim == 0 or out.shape[0] != X.shape[0]:
            raise ValueError(
                f"{name(lw, i)} returned outputs of shape {out.shape} for {X.shape[0]} inputs; "
                "expected one output row per input"
            )
        out = out.reshape(out.shape[0], -1).astype(np.float64)
        if not np.isfinite(out).all():
            raise ValueError(f"{name(lw, i)} returned NaN or infinite outputs")
        results.append(out)
    return results


def common_width(outputs: Sequence[np.ndarray], learnwares: Sequence[Any], why: str) -> int:
    """The one output width all learnwares share; an error listing them if they differ."""
    widths = [o.shape[1] for o in outputs]
    if len(set(widths)) > 1:
        shown = ", ".join(
            f"{name(lw, i)}: {w}" for i, (lw, w) in enumerate(zip(learnwares, widths, strict=True))
        )
        raise ValueError(f"learnwares return outputs of different widths ({shown}); {why}")
    return widths[0]

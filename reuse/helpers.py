"""One-step helpers: fit a reuse method by name, and load the learnwares a search found."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .averaging import Averaging
from .ensemble_pruning import EnsemblePruning
from .feature_augment import FeatureAugment
from .job_selector import JobSelector
from .runner import Learnware

METHODS = {
    "job_selector": JobSelector,
    "averaging": Averaging,
    "ensemble_pruning": EnsemblePruning,
    "feature_augment": FeatureAugment,
}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def reuse(method: str | type, learnwares: Any, X: Any = None, y: Any = None, **kwargs: Any):
    """Build the reuse estimator ``method`` on ``learnwares`` and fit it.

    Parameters
    ----------
    method : str or class
        ``"job_selector"``, ``"averaging"``, ``"ensemble_pruning"`` or ``"feature_augment"``
        (also written ``"JobSelector"``, ``"ensemble-pruning"`` …), or one of the classes.
    learnwares : list
        Objects with ``predict(X)`` (and ``spec`` for the job selector).
    X, y : array-like, optional
        Passed to ``fit``: unlabelled user data for the data-free methods, labelled data
        for ``"ensemble_pruning"`` and ``"feature_augment"``.
    **kwargs
        The estimator's other parameters (``task``, ``mode``, ``random_state`` …).

    Returns
    -------
    The fitted estimator.

    Examples
    --------
    >>> import numpy as np
    >>> class Linear:
    ...     def __init__(self, w):
    ...         self.w = np.asarray(w, dtype=float)
    ...     def predict(self, X):
    ...         return X @ self.w[:, None]
    >>> avg = reuse("averaging", [Linear([1, 0]), Linear([0, 1])], mode="mean")
    >>> avg.predict(np.array([[2.0, 4.0]])).tolist()
    [3.0]
    """
    if isinstance(method, type):
        cls = method
    else:
        key = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", str(method)).lower().replace("-", "_")
        if key not in METHODS:
            raise ValueError(f"unknown reuse method {method!r}; choose one of {', '.join(METHODS)}")
        cls = METHODS[key]
    estimator = cls(learnwares, **kwargs)
    return estimator.fit(X) if y is None else estimator.fit(X, y)


def from_search(
    client: Any,
    result: dict[str, Any],
    dest_dir: str | os.PathLike[str],
    *,
    mixture: bool = True,
    top: int | None = None,
    **load_kwargs: Any,
) -> list[Learnware]:
    """Download and load the learnwares of a search result.

    Parameters
    ----------
    client : client.WharfClient
        Used for ``download(id, path)`` and, for each semantic specification,
        ``learnware(id)``.
    result : dict
        What ``WharfClient.search`` returned (``singles`` and ``mixture``).
    dest_dir : path
        Where the package zips are written (``<id>.zip``); created if missing.
    mixture : bool, default=True
        Load the mixture's members when the search found a mixture; otherwise (or with
        ``mixture=False``) load the single matches, best first.
    top : int, optional
        Load at most this many single matches.
    **load_kwargs
        Passed to :meth:`Learnware.load` (``sandbox``, ``limits``, ``time_limit_s`` …).

    Returns
    -------
    list of Learnware
        In the mixture's or the ranking's order; close them when done.
    """
    ids = _chosen_ids(result, mixture=mixture, top=top)
    folder = Path(dest_dir)
    folder.mkdir(parents=True, exist_ok=True)
    loaded: list[Learnware] = []
    try:
        for learnware_id in ids:
            if not _SAFE_ID.match(learnware_id):
                raise ValueError(f"the search result holds an unusable id {learnware_id!r}")
            path = client.download(learnware_id, folder / f"{learnware_id}.zip")
            semantic = client.learnware(learnware_id).get("semantic_spec")
            loaded.append(
                Learnware.load(path, learnware_id=learnware_id, semantic=semantic, **load_kwargs)
            )
    except BaseException:
        for lw in loaded:
            lw.close()
        raise
    return loaded


def _chosen_ids(result: dict[str, Any], *, mixture: bool, top: int | None) -> list[str]:
    if not isinstance(result, dict):
        raise TypeError(f"result must be the dict WharfClient.search returns; got {result!r:.80}")
    found = result.get("mixture") if mixture else None
    if found and found.get("ids"):
        ids = [str(i) for i in found["ids"]]
    else:
        singles = result.get("singles") or []
        ids = [str(s["id"]) for s in singles[: top if top is not None else len(singles)]]
    if not ids:
        raise ValueError("the search result holds no learnwares to load")
    return list(dict.fromkeys(ids))

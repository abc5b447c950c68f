"""Wharf, a distributed learnware market: share trained models with their specifications, find
the ones that fit your data, and reuse them.

The names a user needs are here, imported on first use (``import wharf`` loads nothing
heavy, and torch only comes with the names that compute)::

    from wharf import RKME, WharfClient, JobSelector

The parts live in subpackages: ``wharf.specification`` (RKME, MMD, spec files, semantic
specs, packages), ``wharf.client`` (the SDK), ``wharf.reuse`` (running and combining
learnwares), and the market's own ``wharf.api``, ``wharf.workers``, ``wharf.market``.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "WharfClient": "wharf.client",
    "WharfError": "wharf.client",
    "JobFailed": "wharf.client",
    "RKME": "wharf.specification",
    "RKMEImage": "wharf.specification",
    "RKMEText": "wharf.specification",
    "SpecificationError": "wharf.specification",
    "load_spec": "wharf.specification",
    "save_spec": "wharf.specification",
    "mmd2": "wharf.specification",
    "HeteroMapTableSpecification": "wharf.specification.hetero",
    "Learnware": "wharf.reuse",
    "Averaging": "wharf.reuse",
    "EnsemblePruning": "wharf.reuse",
    "FeatureAugment": "wharf.reuse",
    "FeatureAlign": "wharf.reuse",
    "HeteroMapAlign": "wharf.reuse",
    "JobSelector": "wharf.reuse",
    "from_search": "wharf.reuse",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wharf' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

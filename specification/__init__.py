"""Wharf's specification core: RKME (tables, images, texts), exact MMD², simplex QP, herding,
index embeddings, spec files, semantic specifications and learnware packages.

Pure math and formats: nothing here starts a service or touches the network, so a user can
compute a spec on a laptop with nothing running. Names are imported on first use, so a process
that only reads spec files, semantic specs or packages (the API) never loads torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "RKME": "rkme",
    "RKMEImage": "image",
    "RKMEText": "text",
    "effective_n_points": "rkme",
    "IndexEmbedding": "embedding",
    "PackageError": "errors",
    "SemanticSpecError": "errors",
    "SpecificationError": "errors",
    "dumps_spec": "files",
    "load_spec": "files",
    "loads_spec": "files",
    "save_spec": "files",
    "spec_from_dict": "files",
    "spec_to_dict": "files",
    "herd": "herding",
    "SpecBank": "mmd",
    "inner_product": "mmd",
    "mmd2": "mmd",
    "QPResult": "qp",
    "solve_simplex_qp": "qp",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

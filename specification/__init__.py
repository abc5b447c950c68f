"""Wharf's specification core: RKME, exact MMD², simplex QP, herding, index embeddings,
spec files, semantic specifications and learnware packages.

Pure math and formats: nothing here starts a service or touches the network, so a user can
compute a spec on a laptop with nothing running.
"""

from .embedding import IndexEmbedding
from .errors import PackageError, SemanticSpecError, SpecificationError
from .files import dumps_spec, load_spec, loads_spec, save_spec, spec_from_dict, spec_to_dict
from .herding import herd
from .mmd import SpecBank, inner_product, mmd2
from .qp import QPResult, solve_simplex_qp
from .rkme import RKME, effective_n_points

__all__ = [
    "RKME",
    "IndexEmbedding",
    "PackageError",
    "QPResult",
    "SemanticSpecError",
    "SpecBank",
    "SpecificationError",
    "dumps_spec",
    "effective_n_points",
    "herd",
    "inner_product",
    "load_spec",
    "loads_spec",
    "mmd2",
    "save_spec",
    "solve_simplex_qp",
    "spec_from_dict",
    "spec_to_dict",
]

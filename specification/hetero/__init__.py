"""The heterogeneous market's specification: tables whose columns differ, in one shared space.

A market trains a *map* (a column-description encoder and a small table transformer) on its
own accepted table RKMEs and their ``Input.Description`` texts. The map sends any described
table row into one 128-dimensional space, so a learnware's RKME reduced points, mapped there
with their weights β, become a :class:`HeteroMapTableSpecification` (the reference's format)
that can be compared by MMD with the mapped RKME of a user whose columns are different.

Modules, so that reading and checking specs never imports torch:

- :mod:`.spec`: the spec class and its JSON file format (numpy only);
- :mod:`.eligibility`: which learnwares and requirements can take part, and their columns;
- :mod:`.columns`: bounds on column descriptions and their WordPiece tokens (``tokenizers``);
- :mod:`.network`, :mod:`.training`, :mod:`.model`: the torch network, its contrastive
  training and the trained map as a saved, versioned object (import them explicitly).
"""

from .eligibility import HeteroInputError, check_hetero_input, column_descriptions, hetero_problem
from .spec import (
    HETERO_GAMMA,
    HETERO_SPEC_TYPE,
    HeteroMapTableSpecification,
    dumps_hetero_spec,
    load_hetero_spec,
    loads_hetero_spec,
    save_hetero_spec,
)

__all__ = [
    "HETERO_GAMMA",
    "HETERO_SPEC_TYPE",
    "HeteroInputError",
    "HeteroMapTableSpecification",
    "check_hetero_input",
    "column_descriptions",
    "dumps_hetero_spec",
    "hetero_problem",
    "load_hetero_spec",
    "loads_hetero_spec",
    "save_hetero_spec",
]

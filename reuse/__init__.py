"""Reusing learnwares on the user's side: run them, and combine them into a model.

:class:`Learnware` runs a downloaded package's model, sandboxed by default. The reuse
methods are scikit-learn estimators over a list of learnwares (anything with ``predict(X)``):

- :class:`JobSelector` (data-free): routes each input to one learnware via their RKMEs;
- :class:`Averaging` (data-free): means, probability averages and votes;
- :class:`EnsemblePruning` (a little labelled data): keeps the subset that does best;
- :class:`FeatureAugment` (a little labelled data): learnware outputs as extra features;
- :class:`FeatureAlign` and :class:`HeteroMapAlign`: one learnware whose input columns are
  not the user's, aligned to them (by distribution; and through the market's map by what
  each column is), then used alone or with a little labelled data.

:func:`reuse` fits one by name; :func:`from_search` downloads and loads a search's learnwares.
"""

from .averaging import Averaging
from .ensemble_pruning import EnsemblePruning
from .feature_align import FeatureAlign, HeteroMapAlign
from .feature_augment import FeatureAugment
from .helpers import from_search, reuse
from .job_selector import JobSelector
from .runner import Learnware, LearnwareRunError, SandboxUnavailable

__all__ = [
    "Averaging",
    "EnsemblePruning",
    "FeatureAlign",
    "FeatureAugment",
    "HeteroMapAlign",
    "JobSelector",
    "Learnware",
    "LearnwareRunError",
    "SandboxUnavailable",
    "from_search",
    "reuse",
]

"""How a search worker's index is built and searched: the one home of its defaults.

The market's ``WHARF_INDEX_*`` settings take their defaults from these classes
(``market/settings.py``), and the index uses them as they are when given no settings (tests,
benchmarks). This module imports nothing heavy (no faiss, no torch), so the settings can.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CoarseConfig:
    """When to leave the flat index, the memory its vectors may take, the recall to tune for."""

    flat_max: int = 50_000
    memory_budget_bytes: int = 3 << 30
    target_recall: float = 0.99
    tune_k: int = 100
    seed: int = 0


@dataclass
class IndexConfig:
    """How partitions are indexed and searched (the defaults are measured in the benchmark)."""

    embedding_size: int = 256
    embedding_seed: int = 0
    exact_max_rows: int = 100_000
    min_candidates: int = 200
    coarse: CoarseConfig = field(default_factory=CoarseConfig)
    #: Image partitions scan exactly up to this many points (100 specs of 50), and re-rank at
    #: least this many FAISS candidates beyond.
    image_exact_max_rows: int = 5_000
    image_min_candidates: int = 50
    #: Where image partitions keep their points and run the NNGP kernel ("cuda" on a GPU).
    image_device: str = "cpu"
    #: How table partitions keep their points (``PackedSpecs(points=...)``): "float32" for
    #: points computed in float32, as the heterogeneous map's are (half the memory, same
    #: results).
    point_dtype: str = "float64"

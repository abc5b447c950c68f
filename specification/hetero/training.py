"""Training the map: a supervised-contrastive objective on column views of RKME points.

Each training row (a reduced point of an accepted learnware's RKME, never raw data) is cut
into a few overlapping *views*, contiguous runs of its columns. The views of one row are
encoded separately and pulled together, away from the views of every other row in the batch
(SupCon, with the reference's temperature and scaling): the map learns to place a row by what
its columns say and hold, whichever subset of them it sees.

Batches hold tables of the same width only, so a view is the same columns of every row in it
(no padding) and a batch's columns are embedded once, not once per row. Only the token rows
that the descriptions use are trained and updated: a dense 30,522-row table would cost an Adam
step over 4 million numbers per batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._arrays import resolve_device
from ..errors import SpecificationError
from .columns import MAX_COLUMNS, tokenize
from .model import HeteroMap, new_network
from .network import HeteroMapConfig, HeteroMapNetwork

#: Largest number of training rows (reduced points over all tables) one training takes.
MAX_TRAINING_ROWS = 5_000_000


@dataclass(frozen=True)
class TrainingTable:
    """One learnware's part of the training set: its RKME points and column descriptions."""

    z: np.ndarray
    descriptions: tuple[str, ...]


def column_views(d: int, partitions: int, overlap_ratio: float) -> list[np.ndarray]:
    """Contiguous column runs of a d-column table: ``partitions`` chunks (fewer when d is
    small), each widened by ⌈ratio·|first chunk|⌉ columns of its right neighbour (the last
    one by those of its left neighbour)."""
    chunks = [c for c in np.array_split(np.arange(d), min(partitions, d)) if len(c)]
    if len(chunks) < 2:
        return chunks
    overlap = math.ceil(overlap_ratio * len(chunks[0]))
    views = []
    for i, chunk in enumerate(chunks):
        if i < len(chunks) - 1:
            views.append(np.concatenate([chunk, chunks[i + 1][:overlap]]))
        else:
            views.append(np.concatenate([chunks[i - 1][len(chunks[i - 1]) - overlap :], chunk]))
    return views


def supcon_loss(features: torch.Tensor, config: HeteroMapConfig) -> torch.Tensor:
    """(N, V, p) projected views of N rows → the supervised contrastive loss, whose positives
    are the other views of the same row."""
    n, v, _ = features.shape
    flat = features.reshape(n * v, -1)
    logits = flat @ flat.T / config.temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    labels = torch.arange(n, device=flat.device).repeat_interleave(v)
    not_self = ~torch.eye(n * v, dtype=torch.bool, device=flat.device)
    positive = (labels[:, None] == labels[None, :]) & not_self
    exp = torch.exp(logits) * not_self
    log_prob = logits - torch.log(exp.sum(1, keepdim=True))
    mean_positive = (log_prob * positive).sum(1) / positive.sum(1)
    return -(config.temperature / config.base_temperature) * mean_positive.mean()


def check_tables(tables: Sequence[tuple[np.ndarray, Sequence[str]]]) -> list[TrainingTable]:
    out, rows = [], 0
    for i, (z, descriptions) in enumerate(tables):
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or not np.isfinite(z).all():
            raise SpecificationError(f"tables[{i}]: z must be a finite (K, d) array")
        if len(descriptions) != z.shape[1] or not 1 <= z.shape[1] <= MAX_COLUMNS:
            raise SpecificationError(
                f"tables[{i}]: {len(descriptions)} descriptions for {z.shape[1]} columns "
                f"(1 to {MAX_COLUMNS} columns, one description each)"
            )
        rows += z.shape[0]
        if rows > MAX_TRAINING_ROWS:
            raise SpecificationError(f"over {MAX_TRAINING_ROWS} training rows in all")
        out.append(TrainingTable(z, tuple(descriptions)))
    return out


def train_hetero_map(
    tables: Sequence[tuple[np.ndarray, Sequence[str]]],
    config: HeteroMapConfig | None = None,
    *,
    epochs: int = 2,
    batch_rows: int = 256,
    rows_per_table: int | None = 8,
    lr: float = 1e-4,
    seed: int = 0,
    device: str = "auto",
    info: dict | None = None,
    progress: Callable[[float], None] | None = None,
) -> HeteroMap:
    """Train a map on ``tables``, pairs of RKME points (K × d) and their d descriptions.

    Tables of one column take no part in the loss (a single view has no positive). On the
    CPU the same seed and tables give the same map. ``progress`` is called with the share of
    steps done after each epoch.

    An epoch takes ``rows_per_table`` of each table's points, drawn afresh (all of them with
    ``None``): a batch then holds several tables and their different columns, and the cost of
    an epoch grows with the number of tables, not of reduced points.
    """
    config = config or HeteroMapConfig()
    items = check_tables(tables)
    if not 1 <= epochs <= 1000 or not 2 <= batch_rows <= 65_536:
        raise SpecificationError("epochs must be in [1, 1000] and batch_rows in [2, 65536]")
    if rows_per_table is not None and rows_per_table < 2:
        raise SpecificationError("rows_per_table must be at least 2 (or None: every row)")
    dev = resolve_device(device)
    network = new_network(config, seed).to(dev)
    started = time.perf_counter()

    # Each distinct description once; the token rows it uses, as a trainable compact table.
    texts = sorted({t for item in items for t in item.descriptions})
    text_index = {t: i for i, t in enumerate(texts)}
    ids, mask = tokenize(texts) if texts else (np.zeros((0, 1), np.int64), np.zeros((0, 1), bool))
    used = np.unique(ids[mask])
    local_ids = torch.from_numpy(np.searchsorted(used, ids) * mask).to(dev)
    token_mask = torch.from_numpy(mask).to(dev)
    table = torch.nn.Parameter(network.token_embedding.weight.detach()[torch.from_numpy(used)])
    others = [p for n, p in network.named_parameters() if n != "token_embedding.weight"]
    optimiser = torch.optim.Adam([*others, table], lr=lr)

    groups: dict[int, list[TrainingTable]] = {}
    for item in items:
        if item.z.shape[1] >= 2:
            groups.setdefault(item.z.shape[1], []).append(item)
    rng = np.random.default_rng(seed)
    steps, last_loss = 0, math.nan
    network.train()
    for epoch in range(epochs):
        batches = _batches(groups, batch_rows, rows_per_table, rng)
        for batch in batches:
            loss = _step(network, table, batch, text_index, local_ids, token_mask, dev)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            steps += 1
            last_loss = float(loss.detach())
        if progress is not None:
            progress((epoch + 1) / epochs)
    network.eval()
    with torch.no_grad():
        network.token_embedding.weight[torch.from_numpy(used).to(dev)] = table.detach()
    facts = {
        "tables": len(items),
        "rows": int(sum(item.z.shape[0] for item in items)),
        "epochs": epochs,
        "steps": steps,
        "final_loss": last_loss,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return HeteroMap(network, {**facts, **(info or {})}, device=str(dev))


def _batches(
    groups: dict[int, list[TrainingTable]],
    batch_rows: int,
    rows_per_table: int | None,
    rng: np.random.Generator,
) -> list[list[TrainingTable]]:
    """Tables of one width, shuffled (each cut to ``rows_per_table`` random rows), packed
    into batches of at most ``batch_rows`` rows (a larger table alone); the batches of all
    widths in a shuffled order."""
    batches: list[list[TrainingTable]] = []
    for width in sorted(groups):
        members = groups[width]
        current: list[TrainingTable] = []
        rows = 0
        for i in rng.permutation(len(members)):
            item = members[i]
            if rows_per_table is not None and item.z.shape[0] > rows_per_table:
                picked = np.sort(rng.choice(item.z.shape[0], rows_per_table, replace=False))
                item = TrainingTable(item.z[picked], item.descriptions)
            if current and rows + item.z.shape[0] > batch_rows:
                batches.append(current)
                current, rows = [], 0
            current.append(item)
            rows += item.z.shape[0]
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))]


def _step(
    network: HeteroMapNetwork,
    table: torch.Tensor,
    batch: list[TrainingTable],
    text_index: dict[str, int],
    local_ids: torch.Tensor,
    token_mask: torch.Tensor,
    dev: torch.device,
) -> torch.Tensor:
    config = network.config
    columns_of = np.array([[text_index[t] for t in item.descriptions] for item in batch])
    distinct, inverse = np.unique(columns_of, return_inverse=True)
    picked = torch.from_numpy(distinct).to(dev)
    embedded = network.column_embeddings(local_ids[picked], token_mask[picked], table)
    per_table = embedded[torch.from_numpy(inverse.reshape(columns_of.shape)).to(dev)]
    counts = torch.tensor([item.z.shape[0] for item in batch], device=dev)
    columns = per_table.repeat_interleave(counts, dim=0)  # (N, d, h)
    values = torch.from_numpy(np.concatenate([item.z for item in batch])).to(dev, torch.float32)
    views = column_views(values.shape[1], config.num_partitions, config.overlap_ratio)
    features = []
    for view in views:
        cols = torch.from_numpy(view).to(dev)
        features.append(network.projection(network.encode(values[:, cols], columns[:, cols])))
    return supcon_loss(torch.stack(features, dim=1), config)

"""Snapshots of a :class:`~market.index.partition.MarketIndex` in the object store.

A new search worker starts from the newest snapshot and reads only the change-log tail after
it, instead of parsing every accepted spec from the catalog. Layout under ``index/snapshots/``:

- ``<name>/part-<i>.npz``: one partition — its specs (:meth:`PackedSpecs.state`, or
  :meth:`ImageSpecs.state` for images), the serialized FAISS index and a JSON header (key,
  index embedding, coarse info, and a text partition's languages by learnware id);
- ``<name>/manifest.json``: the change-log position the snapshot reflects (``seq``, ``high``
  and ``gaps``, as :mod:`market.index.sync` keeps them), the index configuration and the
  partition files;
- ``LATEST``: the name of the newest complete snapshot, written last, so a reader never sees a
  half-written one. Older snapshots beyond the newest ``keep`` are deleted.
"""

from __future__ import annotations

import io
import json
import logging
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from wharf.market.scoring import PartitionKey
from wharf.market.store import ObjectNotFound, ObjectStore

from .coarse import CoarseConfig, CoarseIndex
from .config import IndexConfig
from .partition import MarketIndex, PartitionIndex

log = logging.getLogger("wharf.index")

PREFIX = "index/snapshots"
LATEST = f"{PREFIX}/LATEST"
FORMAT = 2


def save_snapshot(
    index: MarketIndex,
    store: ObjectStore,
    *,
    high: int | None = None,
    gaps: Sequence[int] = (),
    keep: int = 2,
) -> str:
    """Write a snapshot of ``index`` and its change-log position (the highest entry applied
    and the gaps below it; see :mod:`market.index.sync`); returns its name. Holds the index's
    lock while serializing."""
    name = f"{index.seq:012d}-{uuid.uuid4().hex[:8]}"
    files = []
    with index.lock, tempfile.TemporaryDirectory(prefix="wharf-snapshot-") as tmp:
        for i, part in enumerate(index.partitions.values()):
            header = {"key": [part.key.spec_type, list(part.key.feature_shape), part.key.gamma]}
            arrays = dict(part.specs.state())
            if part.languages:
                header["languages"] = {str(i): sorted(v) for i, v in part.languages.items()}
            header["embedding"] = part.embedding.key
            header["coarse"] = part.coarse.info.to_dict()
            arrays["faiss"] = part.coarse.serialize()
            arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
            path = Path(tmp) / f"part-{i}.npz"
            np.savez(path, **arrays)
            key = f"{PREFIX}/{name}/part-{i}.npz"
            with path.open("rb") as f:
                store.put(key, f)
            path.unlink()
            files.append(key)
        manifest = {
            "format": FORMAT,
            "seq": index.seq,
            "high": index.seq if high is None else int(high),
            "gaps": sorted(int(q) for q in gaps),
            "created_at": datetime.now(UTC).isoformat(),
            "config": _config_dict(index.config),
            "partitions": files,
            "learnwares": len(index),
        }
    store.put(f"{PREFIX}/{name}/manifest.json", io.BytesIO(json.dumps(manifest).encode()))
    store.put(LATEST, io.BytesIO(name.encode()))
    _prune(store, keep=keep, current=name)
    log.info("index snapshot %s: %d learnwares at seq %d", name, len(index), index.seq)
    return name


def load_snapshot(
    store: ObjectStore, config: IndexConfig
) -> tuple[MarketIndex, int, list[int]] | None:
    """The newest snapshot: the index, the highest change-log entry it reflects and the gaps
    below that; ``None`` without a usable one (none, or made with another configuration)."""
    try:
        name = _read(store, LATEST).decode().strip()
        manifest = json.loads(_read(store, f"{PREFIX}/{name}/manifest.json"))
    except ObjectNotFound:
        return None
    if manifest.get("format") != FORMAT or manifest.get("config") != _config_dict(config):
        log.warning("index snapshot %s was made with another configuration; not used", name)
        return None
    index = MarketIndex(config)
    index.seq = int(manifest["seq"])
    with tempfile.TemporaryDirectory(prefix="wharf-snapshot-") as tmp:
        for key in manifest["partitions"]:
            path = Path(tmp) / "part.npz"
            store.download_to(key, path)
            with np.load(path) as data:
                header = json.loads(bytes(data["header"]).decode())
                spec_type, shape, gamma = header["key"]
                part = PartitionIndex(PartitionKey(spec_type, tuple(shape), float(gamma)), config)
                if header.get("embedding") != part.embedding.key:
                    log.warning(
                        "index snapshot %s embeds %s with %s, this worker with %s; not used",
                        name,
                        part.key.spec_type,
                        header.get("embedding"),
                        part.embedding.key,
                    )
                    return None
                part.load_state(data, header)
                part.coarse = CoarseIndex.deserialize(
                    data["faiss"], part.embedding.size, header["coarse"], config.coarse
                )
                index.partitions[part.key] = part
            path.unlink()
    log.info("index snapshot %s loaded: %d learnwares at seq %d", name, len(index), index.seq)
    return index, int(manifest.get("high", index.seq)), list(manifest.get("gaps", ()))


def _read(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as f:
        return f.read()


def _config_dict(config: IndexConfig) -> dict:
    out = asdict(config)
    out.pop("image_device", None)  # where a worker computes does not change what it stores
    out["coarse"] = asdict(config.coarse) if isinstance(config.coarse, CoarseConfig) else {}
    return json.loads(json.dumps(out))


def _prune(store: ObjectStore, *, keep: int, current: str) -> None:
    """Delete snapshots older than the newest ``keep`` (by name, which starts with the seq)."""
    names = sorted(_snapshot_names(store), reverse=True)
    for old in [n for n in names if n != current][max(0, keep - 1) :]:
        for key in store.list(f"{PREFIX}/{old}/"):
            store.delete(key)


def _snapshot_names(store: ObjectStore) -> set[str]:
    return {
        key[len(PREFIX) + 1 :].split("/", 1)[0]
        for key in store.list(f"{PREFIX}/")
        if key.count("/") >= 3
    }

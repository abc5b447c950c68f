"""``wharf bulk-index PATH``: many learnwares into a market at once.

With ``--trusted`` (admins), PATH is a bundle (``wharf admin export``): it is packed into one
tar, uploaded to ``POST /v1/bulk-imports`` and imported without checks, batch by batch.
Without, PATH is a directory of learnware zips (or a manifest listing them) and each package
is submitted for checking like ``wharf submit``, a few at a time; nothing skips the check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm
from tqdm.utils import CallbackIOWrapper
from wharf.client import WharfClient, WharfError

from .market import add_common, client_for

MANIFEST = "manifest.jsonl"
#: Where a package's semantic spec may be: next to it, or inside the zip.
SIDECARS = ("{stem}.json", "{stem}.semantic.json")
INSIDE = ("semantic_spec.json", "semantic.json")
#: Check jobs polled per round (checks finish roughly in submission order), and at most
#: this many polls a second: well inside a token's read budget (600 a minute by default).
POLL_WINDOW = 8
POLLS_PER_SECOND = 4
T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bulk-index",
        help="submit many learnwares: packages to check, or a trusted bundle (admins)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "path",
        help="a directory of learnware zips (each with <name>.json, its semantic spec, beside "
        "it or semantic_spec.json inside), a manifest (JSON lines with 'package' and "
        "'semantic_spec'), or with --trusted a bundle directory from 'wharf admin export'",
    )
    p.add_argument(
        "--trusted",
        action="store_true",
        help="import PATH, a bundle, without checks (admin token; for migrating a market)",
    )
    p.add_argument("--threads", type=int, default=4, help="concurrent submissions (default 4)")
    p.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )
    add_common(p)
    p.set_defaults(func=cmd_bulk_index)


def cmd_bulk_index(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise SystemExit(f"error: {path} does not exist")
    with client_for(args) as client:
        if args.trusted:
            return trusted_import(client, path, timeout=args.timeout)
        return submit_all(client, path, threads=max(1, args.threads), timeout=args.timeout)


# -- trusted: one bundle upload -------------------------------------------------------------


def trusted_import(client: WharfClient, bundle: Path, *, timeout: float | None = None) -> int:
    if not (bundle / MANIFEST).is_file():
        raise SystemExit(
            f"error: {bundle} holds no {MANIFEST}: is it a bundle (wharf admin export)?"
        )
    with tempfile.TemporaryDirectory(prefix="wharf-bundle-") as tmp:
        tar_path = pack_bundle(bundle, Path(tmp) / "bundle.tar")
        size = tar_path.stat().st_size
        with (
            tar_path.open("rb") as fh,
            tqdm(total=size, unit="B", unit_scale=True, desc="upload", disable=None) as bar,
        ):
            accepted = client.bulk_import(CallbackIOWrapper(bar.update, fh, "read"), trusted=True)
    job_id, entries = accepted["job_id"], accepted["entries"]
    print(f"bulk import job {job_id}: {entries} learnwares in {accepted['batches']} batches")
    job = follow_job(client, job_id, entries, timeout=timeout)
    if job["state"] != "succeeded":
        print(f"error: the import failed: {job.get('error')}", file=sys.stderr)
        return 1
    return print_report(job["result"])


def pack_bundle(bundle: Path, out: Path) -> Path:
    """The bundle's regular files in an uncompressed tar, the manifest first (packages are
    zips already: compressing again costs more time than it saves)."""
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(bundle / MANIFEST, arcname=MANIFEST, recursive=False, filter=_plain)
        for file in sorted(bundle.rglob("*")):
            rel = file.relative_to(bundle).as_posix()
            if rel == MANIFEST or file.name.startswith(".") or file.is_symlink():
                continue
            if file.is_file():
                tar.add(file, arcname=rel, recursive=False, filter=_plain)
    return out


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Whole-second times and no owner names: a plain ustar header, no PAX record per file.
    info.mtime = int(info.mtime)
    info.uname = info.gname = ""
    return info


def follow_job(
    client: WharfClient, job_id: str, entries: int, *, timeout: float | None = None
) -> dict[str, Any]:
    """Poll a bulk-import job to its end, with a progress bar of learnwares."""
    deadline = _deadline(timeout)
    with tqdm(total=entries, unit="learnware", desc="import", disable=None) as bar:
        while True:
            _check_deadline(deadline, f"the import (job {job_id})")
            job = _patient(lambda: client.job(job_id))
            bar.update(max(0, round((job.get("progress") or 0) * entries) - bar.n))
            if job["state"] in ("succeeded", "failed"):
                if job["state"] == "succeeded":
                    bar.update(entries - bar.n)
                return job
            time.sleep(0.25)


def print_report(result: dict[str, Any]) -> int:
    """Print an import's summary; 0 unless entries were rejected."""
    print(
        f"imported {result['imported']} of {result['entries']}: "
        f"{result['duplicates']} already in the market (skipped), {result['rejected']} rejected"
    )
    for d in result.get("duplicate_entries", [])[:20]:
        where = d.get("existing_learnware") or f"line {d.get('duplicate_of_line')}"
        print(f"  line {d['line']}: duplicate of {where}")
    for r in result.get("rejected_entries", []):
        print(f"  line {r['line']}: rejected: {r['reason']}")
    listed = len(result.get("rejected_entries", []))
    if result["rejected"] > listed:
        print(f"  … and {result['rejected'] - listed} more rejected")
    return 0 if result["rejected"] == 0 else 1


# -- untrusted: every package checked -------------------------------------------------------


@dataclass
class Item:
    package: Path
    semantic: dict[str, Any] | None = None
    problem: str | None = None  # why it cannot be submitted
    outcome: str = "failed"  # accepted | rejected | duplicate | failed
    detail: str = ""
    learnware_id: str | None = None
    job_id: str | None = None


def find_items(path: Path) -> list[Item]:
    """The packages to submit: the zips of a directory, or the lines of a manifest."""
    if path.is_dir():
        return [_from_sidecar(zip_path) for zip_path in sorted(path.glob("*.zip"))]
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            package = path.parent / record["package"]
        except (ValueError, KeyError, TypeError) as exc:
            item = Item(path / f"line-{number}", problem=f"{path} line {number}: {exc!r}")
            items.append(item)
            continue
        if isinstance(record.get("semantic_spec"), dict):
            items.append(Item(package, record["semantic_spec"]))
        elif isinstance(record.get("semantic"), str):
            items.append(_with_semantic(Item(package), path.parent / record["semantic"]))
        else:
            items.append(_from_sidecar(package))
    return items


def _from_sidecar(package: Path) -> Item:
    item = Item(package)
    for pattern in SIDECARS:
        candidate = package.with_name(pattern.format(stem=package.stem))
        if candidate.is_file():
            return _with_semantic(item, candidate)
    try:
        with zipfile.ZipFile(package) as zf:
            names = set(zf.namelist())
            tops = {n.split("/")[0] for n in names if "/" in n}
            for name in INSIDE:
                for inside in (name, *(f"{top}/{name}" for top in sorted(tops))):
                    if inside in names:
                        item.semantic = json.loads(zf.read(inside))
                        return item
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        item.problem = f"cannot read {package.name}: {exc}"
        return item
    item.problem = (
        f"no semantic spec: put {package.stem}.json beside it, or semantic_spec.json inside it"
    )
    return item


def _with_semantic(item: Item, path: Path) -> Item:
    try:
        item.semantic = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        item.problem = f"cannot read the semantic spec {path}: {exc}"
    return item


def submit_all(
    client: WharfClient, path: Path, *, threads: int, timeout: float | None = None
) -> int:
    items = find_items(path)
    if not items:
        raise SystemExit(f"error: no learnware packages (*.zip) in {path}")
    todo = [item for item in items if item.problem is None]
    for item in items:
        if item.problem is not None:
            item.detail = item.problem
    with (
        tqdm(total=len(todo), unit="package", desc="submit", disable=None) as bar,
        ThreadPoolExecutor(threads) as pool,
    ):

        def submit(item: Item) -> None:
            _submit(client, item)
            bar.update(1)

        list(pool.map(submit, todo))
    waiting = deque(item for item in todo if item.job_id is not None)
    deadline = _deadline(timeout)
    with tqdm(total=len(waiting), unit="check", desc="check", disable=None) as bar:
        while waiting:
            _check_deadline(deadline, f"{len(waiting)} checks")
            started, finished = time.monotonic(), 0
            window = list(waiting)[:POLL_WINDOW]
            for item in window:
                job = _patient(lambda item=item: client.job(item.job_id))
                if job["state"] in ("succeeded", "failed"):
                    _record(client, item, job)
                    waiting.remove(item)
                    finished += 1
            bar.update(finished)
            pause = len(window) / POLLS_PER_SECOND - (time.monotonic() - started)
            if waiting and pause > 0:
                time.sleep(pause)
    return _summary(items)


def _submit(client: WharfClient, item: Item) -> None:
    try:
        sub = _patient(lambda: client.submit(item.package, item.semantic or {}))
    except WharfError as exc:
        if exc.status == 409:
            item.outcome = "duplicate"
            # The market names the learnware only to those who may see it.
            item.learnware_id = exc.problem.get("existing_learnware")
            item.detail = (
                f"already in the market as learnware {item.learnware_id}"
                if item.learnware_id
                else str(exc.problem.get("detail", exc))
            )
        else:
            item.detail = str(exc)
        return
    except OSError as exc:
        item.detail = f"cannot read {item.package}: {exc}"
        return
    item.learnware_id, item.job_id = sub["learnware_id"], sub["job_id"]


def _record(client: WharfClient, item: Item, job: dict[str, Any]) -> None:
    if job["state"] == "failed":
        item.detail = f"the check failed: {job.get('error')}"
        return
    item.outcome = (job.get("result") or {}).get("status", "failed")
    if item.outcome == "rejected":
        log = _patient(lambda: client.log(item.learnware_id))
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        item.detail = lines[-1] if lines else "rejected"


def _summary(items: list[Item]) -> int:
    counts = {k: sum(i.outcome == k for i in items) for k in ("accepted", "rejected", "failed")}
    duplicates = sum(i.outcome == "duplicate" for i in items)
    print(
        f"accepted {counts['accepted']}, rejected {counts['rejected']}, "
        f"failed {counts['failed']}, already in the market {duplicates} (of {len(items)})"
    )
    for item in items:
        if item.outcome != "accepted":
            lid = f" (learnware {item.learnware_id})" if item.learnware_id else ""
            print(f"  {item.package.name}{lid}: {item.outcome}: {item.detail}")
    return 0 if counts["rejected"] == counts["failed"] == 0 else 1


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _check_deadline(deadline: float | None, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise SystemExit(f"error: gave up waiting for {what} (--timeout); it goes on in the market")


def _patient(call: Callable[[], T], tries: int = 10) -> T:
    """``call()``, waiting out rate limits (429) and a busy queue (503) as the market asks."""
    for attempt in range(tries):
        try:
            return call()
        except WharfError as exc:
            if exc.status not in (429, 503) or attempt == tries - 1:
                raise
            time.sleep(exc.retry_after if exc.retry_after is not None else 2.0)
    raise AssertionError("not reached")

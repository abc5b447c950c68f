"""Moving accepted learnwares between markets: export a bundle, import one trusted.

:func:`export_bundle` writes the accepted learnwares of this market as a bundle
(:mod:`market.bundle`). :func:`import_batch` is the trusted import of a batch of manifest
lines, used by both ways in: :func:`import_bundle` (a bundle directory, ``wharf admin
import``) and the bulk-import job (:mod:`market.bulk`, one batch per index task). It runs no
model code; it checks each entry statically (:func:`market.bundle.check_entry` and the
package's sha256 and size), keeps each package where its caller places it (a new object
under the API's key layout, or where it already lies in a bulk import's pack) and inserts the
batch in one catalog transaction, change log included. Content already in the market (the
same sha256) is skipped and reported, never imported twice.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer
from wharf.market.catalog import Catalog, Learnware, LearnwareStatus, repo
from wharf.market.catalog.bulk import AcceptedRow, insert_accepted, packages_by_sha256
from wharf.market.packages import new_package_key, open_package
from wharf.market.store import ObjectNotFound, ObjectStore, StoreError
from wharf.specification.errors import PackageError
from wharf.specification.limits import SpecLimits
from wharf.specification.reference_layout import write_reference_layout

from .bundle import (
    MANIFEST,
    BundleError,
    Entry,
    EntryRejected,
    check_entry,
    manifest_line,
    package_path,
    read_entry,
)

log = logging.getLogger("wharf.transfer")
#: The export's folder of packages in the reference's layout, one per learnware, by id.
REFERENCE_FOLDER = "reference"

#: Rows per catalog transaction.
BATCH_SIZE = 1000
#: Reports list at most this many duplicates and rejections each (the counts are complete).
MAX_LISTED = 100
#: Package bytes held in memory before they are written to the store.
_PUT_BYTES = 64 * 1024 * 1024
_EXPORT_PAGE = 500
_INSERT_TRIES = 3


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an imported package is kept.

    ``offset`` ``None``: the import writes the package as the object ``key``. Otherwise the
    package is already stored, ``offset`` bytes into the object ``key`` (a pack: a bulk
    import's uploaded bundle, :mod:`market.bulk`), and nothing is written.
    """

    key: str
    offset: int | None = None

    def holds(self, found: tuple[int, str, int | None]) -> bool:
        """Whether the catalog row ``found`` (``packages_by_sha256``) points here."""
        return found[1:] == (self.key, self.offset)


# -- reports ---------------------------------------------------------------------------------


@dataclass
class ImportReport:
    """What an import did; ``duplicates`` and ``rejected`` list at most :data:`MAX_LISTED`."""

    entries: int = 0
    imported: int = 0
    duplicate_count: int = 0
    rejected_count: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def duplicate(self, line: int, sha256: str, **where: Any) -> None:
        self.duplicate_count += 1
        if len(self.duplicates) < MAX_LISTED:
            self.duplicates.append({"line": line, "sha256": sha256, **where})

    def reject(self, line: int, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected) < MAX_LISTED:
            self.rejected.append({"line": line, "reason": reason[:500]})

    def add(self, other: ImportReport | dict[str, Any]) -> ImportReport:
        other = other if isinstance(other, ImportReport) else ImportReport.from_dict(other)
        self.entries += other.entries
        self.imported += other.imported
        self.duplicate_count += other.duplicate_count
        self.rejected_count += other.rejected_count
        self.duplicates = (self.duplicates + other.duplicates)[:MAX_LISTED]
        self.rejected = (self.rejected + other.rejected)[:MAX_LISTED]
        return self

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (a bulk-import job's result); lists sorted by line."""
        return {
            "entries": self.entries,
            "imported": self.imported,
            "duplicates": self.duplicate_count,
            "rejected": self.rejected_count,
            "duplicate_entries": sorted(self.duplicates, key=lambda d: d["line"]),
            "rejected_entries": sorted(self.rejected, key=lambda d: d["line"]),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImportReport:
        return cls(
            entries=data["entries"],
            imported=data["imported"],
            duplicate_count=data["duplicates"],
            rejected_count=data["rejected"],
            duplicates=list(data["duplicate_entries"]),
            rejected=list(data["rejected_entries"]),
        )


# -- import ----------------------------------------------------------------------------------


def trusted_log(who: str, source: str) -> str:
    """The check log of an imported learnware."""
    when = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f"accepted: imported from a trusted bundle ({source}) by {who} at {when}.\n"
        "No check ran in this market: the market it came from had accepted it, and the "
        "import verified its specifications and the package's sha256 and size.\n"
    )


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection during a batch: parsing thousands of specs allocates
    millions of short-lived objects (none in cycles, so reference counting frees them), and
    in a worker whose heap holds torch every full collection scans hundreds of thousands of
    objects. About a tenth of a batch's time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(slots=True)
class _Ready:
    entry: Entry
    row: AcceptedRow
    data: bytes  # to write; empty for a package kept in a pack

    @property
    def placement(self) -> Placement:
        return Placement(self.row.package_key, self.row.package_offset)


@_gc_paused()
def import_batch(
    catalog: Catalog,
    store: ObjectStore,
    lines: Iterable[tuple[int, str | bytes]],
    *,
    owner_id: int,
    read_package: Callable[[str, int], bytes],
    place: Callable[[Entry], Placement],
    check_log: str,
    max_package_bytes: int,
    spec_limits: SpecLimits,
    in_transaction: Callable[[Session], None] | None = None,
) -> ImportReport:
    """Import one batch of manifest lines ``(line number, text)``; one catalog transaction.

    ``read_package(path, size)`` returns the bytes of a bundle-relative package path (raising
    :class:`EntryRejected` if it is missing or larger than ``size``); they are verified
    against the line's sha256 and size. ``place(entry)`` says where the package is kept. An
    entry whose content the catalog already has at the place this call would give it was
    imported by an earlier run of the same step: it counts as imported, so the step can run
    again after a crash. ``in_transaction(session)`` runs inside the catalog transaction (to
    record progress with the rows).
    """
    report = ImportReport()
    entries: list[Entry] = []
    first_line: dict[str, int] = {}
    for line, text in lines:
        report.entries += 1
        try:
            entry = read_entry(line, text, max_package_bytes=max_package_bytes)
        except EntryRejected as exc:
            report.reject(line, str(exc))
            continue
        if entry.sha256 in first_line:
            report.duplicate(line, entry.sha256, duplicate_of_line=first_line[entry.sha256])
            continue
        first_line[entry.sha256] = line
        entries.append(entry)

    with catalog.session(read_only=True) as s:
        present = packages_by_sha256(s, first_line)
    fresh = _skip_present(entries, present, place, report)

    ready: list[_Ready] = []
    for entry in fresh:
        try:
            columns = check_entry(entry, spec_limits)
            data = read_package(entry.package, entry.size)
            _verify_package(entry, data)
        except EntryRejected as exc:
            report.reject(entry.line, str(exc))
            continue
        placement = place(entry)
        row = AcceptedRow(
            semantic=columns,
            spec_meta=entry.spec_meta,
            stat_spec=entry.stat_spec,
            sha256=entry.sha256,
            package_key=placement.key,
            package_size=entry.size,
            package_offset=placement.offset,
        )
        ready.append(_Ready(entry, row, data if placement.offset is None else b""))

    written = _put_packages(store, ready)
    try:
        duplicates = _insert(catalog, owner_id, ready, check_log, report, in_transaction)
    except BaseException:
        _delete_quietly(store, written)
        raise
    _delete_quietly(store, [d.row.package_key for d in duplicates if d.row.package_offset is None])
    return report


def _skip_present(
    entries: list[Entry],
    present: dict[str, tuple[int, str, int | None]],
    place: Callable[[Entry], Placement],
    report: ImportReport,
) -> list[Entry]:
    fresh = []
    for entry in entries:
        found = present.get(entry.sha256)
        if found is None:
            fresh.append(entry)
        elif place(entry).holds(found):
            report.imported += 1  # an earlier run of this very step imported it
        else:
            report.duplicate(entry.line, entry.sha256, existing_learnware=repo.format_id(found[0]))
    return fresh


def _verify_package(entry: Entry, data: bytes) -> None:
    if len(data) != entry.size:
        raise EntryRejected(
            f"package {entry.package} is {len(data)} bytes but the manifest says {entry.size}"
        )
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry.sha256:
        raise EntryRejected(
            f"package {entry.package} has sha256 {digest} but the manifest says {entry.sha256}"
        )


def _put_packages(store: ObjectStore, ready: list[_Ready]) -> list[str]:
    """Write the packages not kept in a pack, a bounded amount of memory at a time; free
    their bytes. Returns the keys written."""
    pending: list[tuple[str, bytes]] = []
    written: list[str] = []
    held = 0
    for item in ready:
        if item.row.package_offset is not None:
            continue
        written.append(item.row.package_key)
        pending.append((item.row.package_key, item.data))
        held += len(item.data)
        item.data = b""
        if held >= _PUT_BYTES:
            store.put_many(pending)
            pending, held = [], 0
    store.put_many(pending)
    return written


def _insert(
    catalog: Catalog,
    owner_id: int,
    ready: list[_Ready],
    check_log: str,
    report: ImportReport,
    in_transaction: Callable[[Session], None] | None,
) -> list[_Ready]:
    """Insert the rows whose content is not in the catalog by now; returns those that turned
    out duplicates (their written packages are to be deleted).

    The duplicate look-up runs again inside the write transaction: on SQLite that holds the
    write lock, so nothing can slip in between; on PostgreSQL a concurrent import can still
    win the race, which the unique constraint reports and the next try sees.
    """
    with catalog.session() as s:
        for attempt in range(_INSERT_TRIES):
            present = packages_by_sha256(s, [r.entry.sha256 for r in ready])
            rows: list[AcceptedRow] = []
            earlier = 0  # imported by an earlier run of this step
            duplicates: list[tuple[_Ready, int]] = []
            for item in ready:
                found = present.get(item.entry.sha256)
                if found is None:
                    rows.append(item.row)
                elif item.placement.holds(found):
                    earlier += 1
                else:
                    duplicates.append((item, found[0]))
            try:
                with s.begin_nested():
                    insert_accepted(s, owner_id, rows, check_log=check_log)
                break
            except IntegrityError:
                if attempt == _INSERT_TRIES - 1:
                    raise
        if in_transaction is not None:
            in_transaction(s)
    report.imported += len(rows) + earlier
    for item, existing in duplicates:
        report.duplicate(
            item.entry.line, item.entry.sha256, existing_learnware=repo.format_id(existing)
        )
    return [item for item, _ in duplicates]


def _delete_quietly(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        try:
            store.delete(key)
        except StoreError:
            pass  # an orphan object wastes space but misleads nobody


def import_bundle(
    catalog: Catalog,
    store: ObjectStore,
    bundle_dir: str | os.PathLike[str],
    *,
    owner_id: int,
    who: str,
    max_package_bytes: int,
    spec_limits: SpecLimits,
    batch_size: int = BATCH_SIZE,
    on_batch: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Trusted import of a bundle directory (``wharf admin import``), batch by batch."""
    root = Path(bundle_dir).resolve()
    manifest = root / MANIFEST
    if not manifest.is_file():
        raise BundleError(f"{root} holds no {MANIFEST}: is it a bundle (wharf admin export)?")

    def read_package(path: str, size: int) -> bytes:
        file = (root / path).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            raise EntryRejected(f"package {path} is not a file in the bundle")
        if file.stat().st_size > size:
            raise EntryRejected(f"package {path} is larger than the manifest's {size} bytes")
        return file.read_bytes()

    log = trusted_log(who, str(root))
    total = ImportReport()
    with manifest.open("rb") as fh:
        for batch in _batches(_numbered_lines(fh), batch_size):
            report = import_batch(
                catalog,
                store,
                batch,
                owner_id=owner_id,
                read_package=read_package,
                place=lambda entry: Placement(new_package_key()),
                check_log=log,
                max_package_bytes=max_package_bytes,
                spec_limits=spec_limits,
            )
            total.add(report)
            if on_batch is not None:
                on_batch(report)
    return total


def _numbered_lines(fh: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """``(line number, line)`` of the non-blank lines."""
    for number, line in enumerate(fh, start=1):
        if line.strip():
            yield number, line


def _batches(lines: Iterator[tuple[int, bytes]], size: int) -> Iterator[list[tuple[int, bytes]]]:
    batch: list[tuple[int, bytes]] = []
    for item in lines:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- export ----------------------------------------------------------------------------------


@dataclass
class ExportReport:
    exported: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (learnware id, reason)


def export_bundle(
    catalog: Catalog,
    store: ObjectStore,
    out_dir: str | os.PathLike[str],
    *,
    ids: Iterable[int] | None = None,
    on_learnware: Callable[[], None] | None = None,
) -> ExportReport:
    """Write the accepted learnwares (all, or ``ids``) as a bundle in ``out_dir``.

    Refuses (:class:`BundleError`) a directory that already holds a bundle, and ``ids`` that
    are not accepted learnwares, before writing anything. A package missing from the store,
    or whose bytes no longer match its sha256, is skipped and reported. The manifest appears
    only when complete.
    """
    out = Path(out_dir)
    if (out / MANIFEST).exists():
        raise BundleError(f"{out} already holds a bundle: export into a new directory")
    with catalog.session(read_only=True) as s:
        chosen = _chosen_ids(s, ids)
    (out / "packages").mkdir(parents=True, exist_ok=True)
    report = ExportReport()
    tmp = out / f".{MANIFEST}.part"
    with tmp.open("w", encoding="utf-8") as manifest:
        for start in range(0, len(chosen), _EXPORT_PAGE):
            with catalog.session(read_only=True) as s:
                page = s.scalars(
                    select(Learnware)
                    .where(Learnware.id.in_(chosen[start : start + _EXPORT_PAGE]))
                    .options(undefer(Learnware.stat_spec))
                    .order_by(Learnware.id)
                ).all()
            for lw in page:  # the session is closed: no transaction while bytes are copied
                reason = _copy_package(store, lw, out)
                if reason is None:
                    _write_reference_copy(lw, out)
                    manifest.write(manifest_line(lw) + "\n")
                    report.exported += 1
                else:
                    report.skipped.append((repo.format_id(lw.id), reason))
                if on_learnware is not None:
                    on_learnware()
    os.replace(tmp, out / MANIFEST)
    return report


def _chosen_ids(s: Session, ids: Iterable[int] | None) -> list[int]:
    accepted = select(Learnware.id).where(Learnware.status == LearnwareStatus.accepted)
    if ids is None:
        return [int(i) for i in s.scalars(accepted.order_by(Learnware.id))]
    wanted = sorted(set(ids))
    found = set(repo.accepted_ids(s, wanted))
    missing = [repo.format_id(i) for i in wanted if i not in found]
    if missing:
        shown = ", ".join(missing[:20]) + (" …" if len(missing) > 20 else "")
        raise BundleError(f"not accepted learnwares of this market (or no such ids): {shown}")
    return wanted


def _write_reference_copy(lw: Learnware, out: Path) -> None:
    """``reference/<id>.zip``: the exported package as Wharf serves it, which the reference's
    loader reads (importers use ``packages/``, the bytes as uploaded, and ignore it)."""
    lid = repo.format_id(lw.id)
    folder = out / REFERENCE_FOLDER
    folder.mkdir(exist_ok=True)
    try:
        write_reference_layout(
            out / package_path(lw.content_sha256),
            folder / f"{lid}.zip",
            semantic_spec=lw.semantic_spec,
            learnware_id=lid,
        )
    except PackageError as exc:  # an accepted package reads; an imported one may not
        (folder / f"{lid}.zip").unlink(missing_ok=True)
        log.warning("learnware %s is exported without a copy in the reference layout: %s", lid, exc)


def _copy_package(store: ObjectStore, lw: Learnware, out: Path) -> str | None:
    """Copy one package into the bundle; ``None``, or why it was skipped."""
    target = out / package_path(lw.content_sha256)
    digest = hashlib.sha256()
    try:
        with open_package(store, lw) as src, target.open("wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
    except ObjectNotFound:
        target.unlink(missing_ok=True)
        return "its package is missing from the object store"
    if digest.hexdigest() != lw.content_sha256:
        target.unlink(missing_ok=True)
        return "its package in the object store no longer matches its sha256"
    return None

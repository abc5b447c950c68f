"""Bulk-import jobs: a bundle uploaded as one tar, imported by many index tasks at once.

The API hands the upload to :func:`stage_upload`, which accepts a tar (or gzipped tar) of a
bundle directory (:mod:`market.bundle`) only if every member is a plain file or folder with a
safe relative name, within the size limits. It stores the tar as it is, ``bulk/<id>/
bundle.tar``, with an index of where each member's bytes lie in it (``members.json``), and
cuts the manifest into batches: runs of ``batch_size`` lines, each given by its byte range.
One index task imports one batch (:func:`import_staged_batch`), reading just its lines and
their packages from the stored tar, so the API copies nothing apart and the tasks share the
work. On a local store the tasks read the object in place; from S3 each worker process
downloads the bundle once and keeps it for the job's other batches.

The stored tar stays as the *pack* of the imported learnwares: each one's package is the
byte range of its member (:mod:`market.packages`), so an import writes no object per
learnware (on a local disk, creating ten thousand small files and making them durable costs
more than all the checks; on S3 it costs ten thousand PUTs). When the job ends,
:func:`release_staged` drops the members index, and the tar too if no learnware uses it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import tarfile
import tempfile
import uuid
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, BinaryIO

from sqlalchemy.orm import Session
from wharf.market.catalog import Catalog
from wharf.market.store import ObjectStore, StoreError
from wharf.specification.jsonio import dump_json, load_json
from wharf.specification.limits import SpecLimits

from .bundle import MANIFEST, BundleError, Entry, EntryRejected, clean_path
from .packages import release_pack
from .transfer import ImportReport, Placement, import_batch

#: Staged bundles live under this prefix of the object store: the tar and its index.
STAGING = "bulk"
BUNDLE = "bundle.tar"
MEMBERS = "members.json"
#: Tar members a bundle may have (files and folders): about half a million learnwares.
MAX_MEMBERS = 1_000_000
_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE)


def pack_key(prefix: str) -> str:
    """The stored tar of the staged bundle ``prefix``: the pack of the learnwares it imports."""
    return f"{prefix}/{BUNDLE}"


@dataclass(frozen=True)
class StagedBatch:
    """``entries`` manifest lines from line ``first_line`` on: bytes ``start`` to ``end`` of
    the manifest."""

    first_line: int
    entries: int
    start: int
    end: int


@dataclass(frozen=True)
class StagedBundle:
    prefix: str
    entries: int
    batches: list[StagedBatch]

    @property
    def pack(self) -> str:
        return pack_key(self.prefix)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "pack": self.pack,
            "entries": self.entries,
            "batches": [asdict(b) for b in self.batches],
        }


def new_prefix() -> str:
    return f"{STAGING}/{uuid.uuid4().hex}"


def stage_upload(
    upload: BinaryIO,
    store: ObjectStore,
    prefix: str,
    *,
    max_bytes: int,
    max_package_bytes: int,
    max_line_bytes: int,
    batch_size: int,
) -> StagedBundle:
    """Check an uploaded bundle tar, store it under ``prefix`` and plan its batches.

    Raises :class:`BundleError` (storing nothing) if the archive is unsafe or unusable: not
    a tar, a member that is not a plain file or folder (links, devices …), a name that is
    absolute or climbs out with ``..``, a member twice, no ``manifest.jsonl`` at the top (or
    in the one top folder), a package over ``max_package_bytes``, more than ``max_bytes``
    unpacked, a manifest line over ``max_line_bytes``, or an empty manifest. Entries with
    problems of their own (bad JSON, a missing package) are left to the batch tasks, which
    report them one by one.
    """
    source = upload
    stored = [pack_key(prefix)]
    try:
        source = _plain_tar(upload, max_bytes)
        # The tar is stored from a second thread while this one checks it: the copy is I/O
        # and hashing (which release the GIL), the check is Python, so the two overlap.
        copy = _PositionalReader(source.fileno())
        with ThreadPoolExecutor(1) as pool:
            storing = pool.submit(store.put, stored[0], copy)
            try:
                with tarfile.open(fileobj=source, mode="r:") as tar:
                    files = _safe_members(tar, max_bytes, max_package_bytes)
                    manifest = files.pop(MANIFEST)
                    batches = _plan(tar.extractfile(manifest), max_line_bytes, batch_size)
            except (tarfile.TarError, EOFError) as exc:
                copy.cancel()
                raise BundleError(f"the upload is not a readable tar archive: {exc}") from None
            except BaseException:
                copy.cancel()
                raise
            storing.result()
        index = {
            "manifest": [manifest.offset_data, manifest.size],
            "members": {name: [info.offset_data, info.size] for name, info in files.items()},
        }
        stored.append(f"{prefix}/{MEMBERS}")
        store.put(stored[-1], io.BytesIO(dump_json(index).encode()))
    except BaseException:
        _delete(store, stored)
        raise
    finally:
        if source is not upload:
            source.close()
    return StagedBundle(prefix, sum(b.entries for b in batches), batches)


class _PositionalReader:
    """Reads a file by position (``os.pread``), leaving its file offset to other readers."""

    def __init__(self, fd: int):
        self._fd = fd
        self._offset = 0
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def read(self, n: int = -1, /) -> bytes:
        if self._cancelled:
            raise BundleError("the upload was refused while it was being stored")
        data = os.pread(self._fd, _CHUNK if n is None or n < 0 else n, self._offset)
        self._offset += len(data)
        return data


def _delete(store: ObjectStore, keys: list[str]) -> None:
    for key in keys:
        try:
            store.delete(key)
        except StoreError:
            pass  # an orphan under bulk/ wastes space but misleads nobody


def _plain_tar(upload: BinaryIO, max_bytes: int) -> BinaryIO:
    """A file holding the plain tar, to close after use: the upload's own file, a copy of it
    if it is in memory, or its decompressed content if gzipped."""
    upload.seek(0)
    magic = upload.read(2)
    upload.seek(0)
    gzipped = magic == _GZIP_MAGIC
    if not gzipped:
        try:
            fd = upload.fileno()  # a spooled upload moves to its file here
            upload.flush()
        except (OSError, AttributeError):
            pass
        else:
            # A plain file object of its own over that file: the tar is read through it
            # without the spooled file's Python wrapper around every seek and read.
            return open(os.dup(fd), "rb")
    out = tempfile.TemporaryFile(prefix="wharf-bulk-")
    total = 0
    try:
        with (
            gzip.GzipFile(fileobj=upload, mode="rb")
            if gzipped
            else contextlib.nullcontext(upload) as plain
        ):
            while chunk := plain.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise BundleError(
                        f"the bundle unpacks to more than the limit of {max_bytes} bytes "
                        "(WHARF_BULK_MAX_BYTES)"
                    )
                out.write(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        out.close()
        raise BundleError(f"the upload is not a valid gzip stream: {exc}") from None
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


def _safe_members(
    tar: tarfile.TarFile, max_bytes: int, max_package_bytes: int
) -> dict[str, tarfile.TarInfo]:
    """The files of the bundle, by path relative to its root (the manifest's folder)."""
    files: dict[str, tarfile.TarInfo] = {}
    total = 0
    for count, info in enumerate(tar, start=1):
        if count > MAX_MEMBERS:
            raise BundleError(f"the tar has more than {MAX_MEMBERS} members: split the bundle")
        if info.type == tarfile.DIRTYPE and info.name.rstrip("/") in ("", "."):
            continue
        try:
            name = clean_path(info.name)
        except ValueError as exc:
            raise BundleError(f"unsafe member name in the tar: {exc}") from None
        if info.type == tarfile.DIRTYPE:
            continue
        if info.type not in _FILE_TYPES:
            raise BundleError(
                f"{name} is {_kind(info)}: a bundle holds only plain files and folders"
            )
        if name in files:
            raise BundleError(f"{name} is in the tar twice")
        total += info.size
        if total > max_bytes:
            raise BundleError(
                f"the bundle unpacks to more than the limit of {max_bytes} bytes "
                "(WHARF_BULK_MAX_BYTES)"
            )
        files[name] = info
    tops = [n for n in files if n == MANIFEST or n.split("/")[1:] == [MANIFEST]]
    if len(tops) != 1:
        raise BundleError(
            f"the tar must hold one {MANIFEST}, at its top or in its one top folder; found "
            f"{len(tops)}"
        )
    root = tops[0][: -len(MANIFEST)]
    bundle: dict[str, tarfile.TarInfo] = {}
    for name, info in files.items():
        if not name.startswith(root):
            raise BundleError(f"{name} is outside the bundle folder {root or '.'}")
        rel = name[len(root) :]
        if rel != MANIFEST and info.size > max_package_bytes:
            raise BundleError(
                f"{name} is larger than the package limit of {max_package_bytes} bytes "
                "(WHARF_MAX_UPLOAD_BYTES)"
            )
        bundle[rel] = info
    return bundle


def _kind(info: tarfile.TarInfo) -> str:
    if info.issym():
        return f"a symbolic link (to {info.linkname!r:.80})"
    if info.islnk():
        return f"a hard link (to {info.linkname!r:.80})"
    if info.ischr() or info.isblk():
        return "a device"
    if info.isfifo():
        return "a named pipe"
    return f"a member of tar type {info.type!r}"


def _plan(manifest: BinaryIO | None, max_line_bytes: int, batch_size: int) -> list[StagedBatch]:
    """Cut the manifest into runs of ``batch_size`` non-blank lines (blank ones ride along)."""
    assert manifest is not None  # a regular file
    batches: list[StagedBatch] = []
    number = offset = 0
    first, start, entries = 1, 0, 0
    while line := manifest.readline(max_line_bytes + 1):
        number += 1
        if len(line) > max_line_bytes:
            raise BundleError(
                f"{MANIFEST} line {number} is longer than the limit of {max_line_bytes} bytes"
            )
        offset += len(line)
        if line.strip():
            entries += 1
            if entries == batch_size:
                batches.append(StagedBatch(first, entries, start, offset))
                first, start, entries = number + 1, offset, 0
    if entries:
        batches.append(StagedBatch(first, entries, start, offset))
    if not batches:
        raise BundleError(f"{MANIFEST} lists no learnwares")
    return batches


def import_staged_batch(
    catalog: Catalog,
    store: ObjectStore,
    prefix: str,
    batch: StagedBatch,
    *,
    owner_id: int,
    check_log: str,
    max_package_bytes: int,
    spec_limits: SpecLimits,
    in_transaction: Callable[[Session], None] | None = None,
) -> ImportReport:
    """Import one batch of a staged bundle (:func:`market.transfer.import_batch`).

    Each package stays where it is in the stored tar; a run after a crash recognises the
    rows the crashed run committed by that place. ``in_transaction`` may raise to roll the
    batch back (the job has ended meanwhile).
    """
    index = _index(store, prefix)
    with _open_bundle(store, prefix) as bundle:
        lines = batch_lines(bundle, index, batch)
        members = index["members"]
        pack = pack_key(prefix)

        def read_package(name: str, size: int) -> bytes:
            where = members.get(name)
            if where is None:
                raise EntryRejected(f"package {name} is not in the bundle")
            offset, length = where
            if length > size:
                raise EntryRejected(
                    f"package {name} is {length} bytes but the manifest says {size}"
                )
            bundle.seek(offset)
            return bundle.read(length)

        def place(entry: Entry) -> Placement:
            where = members.get(entry.package)  # a missing one is rejected when it is read
            return Placement(pack, where[0] if where else -1)

        return import_batch(
            catalog,
            store,
            lines,
            owner_id=owner_id,
            read_package=read_package,
            place=place,
            check_log=check_log,
            max_package_bytes=max_package_bytes,
            spec_limits=spec_limits,
            in_transaction=in_transaction,
        )


def batch_lines(
    bundle: BinaryIO, index: dict[str, Any], batch: StagedBatch
) -> list[tuple[int, bytes]]:
    """``(line number, line)`` of the non-blank manifest lines of ``batch``."""
    manifest_offset, _ = index["manifest"]
    bundle.seek(manifest_offset + batch.start)
    text = bundle.read(batch.end - batch.start)
    # Split at "\n" only, as the plan counted lines (a stray "\r" is the entry's problem).
    raw = text.split(b"\n")[:-1] if text.endswith(b"\n") else text.split(b"\n")
    return [
        (number, line) for number, line in enumerate(raw, start=batch.first_line) if line.strip()
    ]


def staged_index(store: ObjectStore, prefix: str) -> dict[str, Any]:
    """Where each member of the staged bundle ``prefix`` lies in its tar (cached per process)."""
    return _index(store, prefix)


def open_staged(store: ObjectStore, prefix: str) -> BinaryIO:
    """The staged tar of ``prefix`` as a seekable file (downloaded once per process from S3)."""
    return _open_bundle(store, prefix)


def drop_members_index(store: ObjectStore, prefix: str) -> None:
    """Remove the members index of a staged bundle whose batches are all done."""
    try:
        store.delete(f"{prefix}/{MEMBERS}")
    except StoreError:
        pass  # an orphan under bulk/ wastes space but misleads nobody


# A worker process imports many batches of one bundle: its index is read once, and a bundle
# on a store without random access (S3) is downloaded once. One bundle is kept at a time.
_cached: dict[str, Any] = {}


def _index(store: ObjectStore, prefix: str) -> dict[str, Any]:
    if _cached.get("index_prefix") != prefix:
        with store.open(f"{prefix}/{MEMBERS}") as fh:
            _cached["index"] = load_json(fh.read())
        _cached["index_prefix"] = prefix
    return _cached["index"]


def _open_bundle(store: ObjectStore, prefix: str) -> BinaryIO:
    """The staged tar as a seekable file."""
    key = pack_key(prefix)
    source = store.open(key)
    if getattr(source, "seekable", lambda: False)():
        return source
    source.close()
    if _cached.get("file_prefix") != prefix:
        forget_bundle()
        fd, path = tempfile.mkstemp(prefix="wharf-bulk-", suffix=".tar")
        os.close(fd)
        store.download_to(key, path)
        _cached.update(file=path, file_prefix=prefix)
    return open(_cached["file"], "rb")


def forget_bundle() -> None:
    """Drop this process's copy of a downloaded bundle (its job is over)."""
    path = _cached.pop("file", None)
    _cached.pop("file_prefix", None)
    if path:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def delete_staged(store: ObjectStore, prefix: str) -> None:
    """Remove a staged bundle whose job never started."""
    for key in store.list(prefix + "/"):
        store.delete(key)


def release_staged(s: Session, store: ObjectStore, prefix: str) -> None:
    """After the job has ended (committed), whatever the outcome: remove the members index,
    and the tar unless learnwares keep their packages in it."""
    try:
        store.delete(f"{prefix}/{MEMBERS}")
    except StoreError:
        pass  # an orphan under bulk/ wastes space but misleads nobody
    release_pack(s, store, pack_key(prefix))

"""Chunked uploads: a package sent in pieces of at most 1 MiB, then submitted whole.

The reference client sends a zip as sequential chunks (``chunk_begin`` its byte offset,
``file_hash`` the MD5 of the whole zip) and then names the hash to submit it. Chunks are
staged in the object store, so any API process may take any chunk; each is an object
``compat-uploads/<user>/<md5>.<started>/<offset>.<length>``, and the listing of a user's
uploads is all the state there is.

Everything is bounded before it is spent: a chunk's size, an upload's total
(``WHARF_MAX_UPLOAD_BYTES``), the chunks in progress per user (:data:`MAX_UPLOADS_PER_USER`)
and in the whole market (:data:`MAX_STAGED_BYTES`). An upload left unfinished for
:data:`STALE_AFTER_S` is removed by the next upload that starts; submitting one removes it.
Unlike the deployed market, a chunk at offset 0 restarts an upload of the same hash rather
than being refused, and each chunk must start where the previous one ended (the deployed
market appends wherever the client says it starts).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from wharf.market.store import ObjectStore

from .envelope import BAD_PARAMETERS, NOT_FOUND, SYSTEM, CompatError

PREFIX = "compat-uploads/"
#: The largest chunk (the reference client sends 1 MiB).
CHUNK_BYTES = 1024 * 1024
MAX_UPLOADS_PER_USER = 4
MAX_STAGED_BYTES = 4 * 1024 * 1024 * 1024
STALE_AFTER_S = 3600
_MD5 = re.compile(r"[0-9a-f]{32}")
_KEY = re.compile(r"compat-uploads/(\d+)/([0-9a-f]{32})\.(\d+)/(\d+)\.(\d+)")


@dataclass
class Upload:
    """One upload in progress, from the store's listing."""

    user_id: int
    md5: str
    started: int
    chunks: list[tuple[int, int, str]] = field(default_factory=list)  # (offset, length, key)

    @property
    def folder(self) -> str:
        return f"{PREFIX}{self.user_id}/{self.md5}.{self.started}/"

    @property
    def received(self) -> int:
        """Bytes received in one piece from offset 0 (-1 when the chunks leave a gap)."""
        at = 0
        for offset, length, _ in sorted(self.chunks):
            if offset != at:
                return -1
            at += length
        return at


def _uploads(store: ObjectStore, prefix: str) -> list[Upload]:
    found: dict[tuple[int, str, int], Upload] = {}
    for key in store.list(prefix):
        m = _KEY.fullmatch(key)
        if m is None:
            continue
        user_id, md5, started, offset, length = m.groups()
        ident = (int(user_id), md5, int(started))
        upload = found.setdefault(ident, Upload(*ident))
        upload.chunks.append((int(offset), int(length), key))
    return list(found.values())


def _remove(store: ObjectStore, upload: Upload) -> None:
    for _, _, key in upload.chunks:
        store.delete(key)


def check_hash(file_hash: str) -> str:
    if not isinstance(file_hash, str) or not _MD5.fullmatch(file_hash.lower()):
        raise CompatError(BAD_PARAMETERS, "file_hash must be the MD5 of the zip: 32 hex digits")
    return file_hash.lower()


def add_chunk(
    store: ObjectStore, user_id: int, file_hash: str, begin: int, data: bytes, max_bytes: int
) -> None:
    """Stage one chunk of the upload ``file_hash``; ``begin`` 0 starts it (again)."""
    md5 = check_hash(file_hash)
    if not 0 < len(data) <= CHUNK_BYTES:
        raise CompatError(BAD_PARAMETERS, f"a chunk holds 1 to {CHUNK_BYTES} bytes")
    mine = _uploads(store, f"{PREFIX}{user_id}/")
    current = next((u for u in mine if u.md5 == md5), None)
    if begin == 0:
        _start(store, user_id, current)
        current = Upload(user_id, md5, int(time.time()))
    elif current is None:
        raise CompatError(
            NOT_FOUND, "no upload of this file_hash is under way: send its first chunk first"
        )
    else:
        received = current.received
        if begin != received:
            raise CompatError(
                BAD_PARAMETERS,
                f"chunk_begin must be {received}, the bytes received so far (send the chunks "
                "in order, or start again from 0)",
            )
    if begin + len(data) > max_bytes:
        _remove(store, current)
        raise CompatError(BAD_PARAMETERS, f"the package is larger than {max_bytes} bytes")
    key = f"{current.folder}{begin:012d}.{len(data)}"
    store.put(key, _Reader(data), max_bytes=CHUNK_BYTES, durable=False)


def _start(store: ObjectStore, user_id: int, restarted: Upload | None) -> None:
    """Make room for a new upload: drop the one it restarts and stale ones; refuse it when
    the user or the market has too many bytes staged."""
    if restarted is not None:
        _remove(store, restarted)
    everyone = _uploads(store, PREFIX)
    now = time.time()
    live = []
    for upload in everyone:
        if restarted is not None and upload.folder == restarted.folder:
            continue
        if now - upload.started > STALE_AFTER_S:
            _remove(store, upload)
        else:
            live.append(upload)
    if sum(u.user_id == user_id for u in live) >= MAX_UPLOADS_PER_USER:
        raise CompatError(
            BAD_PARAMETERS,
            f"at most {MAX_UPLOADS_PER_USER} uploads may be under way at once; submit one "
            f"(or wait {STALE_AFTER_S // 60} minutes for an abandoned one to be removed)",
            status=429,
        )
    staged = sum(length for u in live for _, length, _ in u.chunks)
    if staged >= MAX_STAGED_BYTES:
        raise CompatError(
            SYSTEM, "the market is receiving too many uploads; try again later", status=503
        )


def take_upload(store: ObjectStore, user_id: int, file_hash: str) -> BinaryIO:
    """The whole upload ``file_hash`` as a file (checked against its MD5), removed from the
    staging area; the caller closes it."""
    md5 = check_hash(file_hash)
    upload = next((u for u in _uploads(store, f"{PREFIX}{user_id}/") if u.md5 == md5), None)
    if upload is None:
        raise CompatError(NOT_FOUND, "no upload of this file_hash: send it with chunked_upload")
    if upload.received < 0:
        _remove(store, upload)
        raise CompatError(BAD_PARAMETERS, "the upload has a gap; send it again from offset 0")
    out = tempfile.SpooledTemporaryFile(max_size=16 * CHUNK_BYTES)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        for _, _, key in sorted(upload.chunks):
            with store.open(key) as src:
                while chunk := src.read(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
    except BaseException:
        out.close()
        raise
    _remove(store, upload)
    if digest.hexdigest() != md5:
        out.close()
        raise CompatError(
            BAD_PARAMETERS, "the bytes received do not have this file_hash; send the file again"
        )
    out.seek(0)
    return out


class _Reader:
    """A chunk as the readable stream the store's ``put`` takes."""

    def __init__(self, data: bytes):
        self._data = memoryview(data)
        self._at = 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n is None or n < 0 else self._at + n
        out = bytes(self._data[self._at : end])
        self._at += len(out)
        return out

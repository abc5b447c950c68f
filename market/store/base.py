"""What every object store is: the :class:`ObjectStore` interface, its errors, key rules and
the metered reader that makes every ``put`` stream, hash and stop at its limit."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

MiB = 1024 * 1024
CHUNK_BYTES = MiB
MAX_KEY_LENGTH = 1024
_KEY_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}")


class StoreError(Exception):
    """Base class of the object store's errors."""


class ObjectNotFound(StoreError):
    """No object under this key."""

    def __init__(self, key: str):
        super().__init__(f"no object {key!r} in the store")
        self.key = key


class ObjectTooLarge(StoreError):
    """The stream had more than ``limit`` bytes; nothing was stored."""

    def __init__(self, key: str, limit: int):
        super().__init__(f"{key!r} is {self.over(limit)}")
        self.key = key
        self.limit = limit

    @staticmethod
    def over(limit: int) -> str:
        return f"larger than the limit of {limit} bytes ({_human(limit)})"


class StoreUnavailable(StoreError):
    """The backend cannot be reached or used (network, credentials, missing bucket)."""


class InvalidKey(StoreError, ValueError):
    """A key outside the allowed form (see :func:`validate_key`)."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


def _human(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n} B"


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe object name, else raise :class:`InvalidKey`.

    Allowed: ``/``-separated parts of ASCII letters, digits, ``.``, ``_`` and ``-``, none
    empty and none starting with ``.`` (which also rules out ``.`` and ``..``, and keeps the
    local store's hidden temporary files unreachable). No leading ``/``, no backslash.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"an object key is 1 to {MAX_KEY_LENGTH} characters, got {key!r:.80}")
    for part in key.split("/"):
        if not _KEY_PART.fullmatch(part):
            raise InvalidKey(
                f"invalid object key {key!r:.80}: parts between '/' must be non-empty, use only "
                "A-Z a-z 0-9 . _ - and not start with '.'"
            )
    return key


class _MeteredReader:
    """Wraps a source stream: hashes and counts what passes, enforces ``max_bytes``.

    It is deliberately not seekable, so boto3 reads it once, in order, part by part (a
    seekable source could be re-read for retries, and the hash would no longer match).
    """

    def __init__(self, key: str, source: Readable, max_bytes: int | None):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError(f"max_bytes must be ≥ 0, got {max_bytes}")
        self.key = key
        self.size = 0
        self._source = source
        self._max = max_bytes
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = CHUNK_BYTES  # never "everything": the source may be gigabytes
        if self._max is not None:
            # Ask for at most one byte past the limit: enough to know it was exceeded.
            n = min(n, self._max - self.size + 1)
        data = self._source.read(n)
        if not data:
            return b""
        self.size += len(data)
        if self._max is not None and self.size > self._max:
            raise ObjectTooLarge(self.key, self._max)
        self._digest.update(data)
        return data

    def stored(self) -> StoredObject:
        return StoredObject(self.key, self.size, self._digest.hexdigest())


class ObjectStore(ABC):
    """Where packages live. Implementations are safe to share between threads."""

    @abstractmethod
    def put(
        self, key: str, stream: Readable, *, max_bytes: int | None = None, durable: bool = True
    ) -> StoredObject:
        """Store everything ``stream.read`` yields under ``key`` (replacing any object there).

        Reads in chunks, never the whole stream at once. Raises :class:`ObjectTooLarge`
        (storing nothing, and leaving any previous object as it was) once more than
        ``max_bytes`` bytes arrive. ``durable=False`` is for short-lived objects (a search's
        uploaded spec): the object is still whole or absent, but a backend may skip flushing
        it to stable storage, so a power cut can lose it.
        """

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store many small objects (``(key, data)`` pairs, data in memory) at once.

        For bulk imports: a backend may make them durable together (the local store fsyncs
        them in one round instead of one by one), so the caller must treat them as written
        only once this returns. On an error some may be stored and others not; each one is
        still whole or absent. This default puts them from a few threads.
        """
        items = list(items)
        if not items:
            return
        with ThreadPoolExecutor(min(8, len(items))) as pool:
            for _ in pool.map(lambda item: self.put(item[0], _BytesReader(item[1])), items):
                pass

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the object; the caller closes it.

        Raises :class:`ObjectNotFound`. Read it in chunks (``read(1 << 20)``), e.g. from the
        generator given to FastAPI's ``StreamingResponse``.
        """

    @abstractmethod
    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        """Like :meth:`open`, for bytes ``start`` to ``start + length`` of the object.

        Raises :class:`ObjectNotFound`, or :class:`StoreError` if the object is shorter.
        """

    @abstractmethod
    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy the object to a local file (written whole or not at all)."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; nothing happens if it does not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys that start with ``prefix``, sorted."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; raises :class:`ObjectNotFound`."""

    @abstractmethod
    def presigned_url(self, key: str, expires_s: int) -> str | None:
        """A URL that lets anyone GET the object for ``expires_s`` seconds; ``None`` if the
        backend has no such URLs (then stream it with :meth:`open`)."""

    @abstractmethod
    def check(self) -> None:
        """Raise :class:`StoreUnavailable` unless the store can be used (for ``/readyz``)."""

    def sweep_partial(self, max_age_s: float) -> int:
        """Remove what writes that never finished left behind (a process killed while it
        put an object): those whose writer is known to be gone at once, the others once
        ``max_age_s`` seconds old. Returns how many were removed; this default has none."""
        return 0


def copy_to_file(src: Readable, path: str | os.PathLike[str]) -> None:
    """Write what ``src`` yields to a local file, whole or not at all (a renamed temporary
    file beside it)."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as dst:
            while chunk := src.read(CHUNK_BYTES):
                dst.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class _BytesReader:
    """A :class:`Readable` over bytes in memory (not seekable, like every put source)."""

    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self._pos = 0

    def read(self, n: int = -1, /) -> bytes:
        end = len(self._view) if n is None or n < 0 else self._pos + n
        chunk = bytes(self._view[self._pos : end])
        self._pos += len(chunk)
        return chunk

"""The embedded market's object store: objects as files under a directory."""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import socket
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from .base import (
    CHUNK_BYTES,
    ObjectNotFound,
    ObjectStore,
    Readable,
    StoredObject,
    StoreError,
    StoreUnavailable,
    _MeteredReader,
    copy_to_file,
    validate_key,
)

#: A partial write's file names its writer (pid and a digest of the host name), so that
#: :meth:`LocalStore.sweep_partial` can tell the leftovers of a dead process at once.
_HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_PARTIAL = re.compile(r"^\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-.*\.part$")


def _writer() -> str:
    return f"{os.getpid()}-{_HOST_TAG}"


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created if missing); keys map to relative paths.

    A put writes a hidden temporary file next to the target (``.<pid>-<host>-….part``),
    fsyncs it, renames it into place and fsyncs the directory: a crash leaves either the old
    object or the new one, and perhaps the ``.part`` file, which :meth:`sweep_partial`
    removes.
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def put(
        self, key: str, stream: Readable, *, max_bytes: int | None = None, durable: bool = True
    ) -> StoredObject:
        path = self._path(key)
        reader = _MeteredReader(key, stream, max_bytes)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{_writer()}-", suffix=".part")
        except OSError as exc:
            raise StoreError(f"cannot write {key!r}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := reader.read(CHUNK_BYTES):
                    f.write(chunk)
                if durable:
                    f.flush()
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException as exc:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {key!r}: {exc}") from exc
            raise
        if durable:
            _fsync_dir(path.parent)
        return reader.stored()

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        # One fsync per object, one after the other, costs about a millisecond each: a bulk
        # import of thousands would spend most of its time there. Here every object goes to
        # a temporary file first, all of them are fsynced from a few threads (the file
        # system commits them together), and only then renamed into place, so each object
        # is still whole or absent.
        staged: list[tuple[str, Path]] = []
        directories: set[Path] = set()
        try:
            for key, data in items:
                path = self._path(key)
                tmp = str(path.parent / f".{_writer()}-{path.name}.{secrets.token_hex(6)}.part")
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileNotFoundError:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                staged.append((tmp, path))
                directories.add(path.parent)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
            if staged:
                groups = [[tmp for tmp, _ in staged[i::8]] for i in range(min(8, len(staged)))]
                with ThreadPoolExecutor(len(groups)) as pool:
                    for _ in pool.map(_fsync_files, groups):
                        pass
            while staged:
                tmp, path = staged[-1]
                os.replace(tmp, path)
                staged.pop()
            for directory in directories:
                _fsync_dir(directory)
        except OSError as exc:
            raise StoreError(f"cannot write objects: {exc}") from exc
        finally:
            for tmp, _ in staged:
                with suppress(FileNotFoundError):
                    os.unlink(tmp)

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        fh = self.open(key)
        try:
            size = os.fstat(fh.fileno()).st_size
            if start < 0 or length < 0 or start + length > size:
                raise StoreError(
                    f"bytes {start} to {start + length} of {key!r} were asked for, but it holds "
                    f"{size} bytes"
                )
            fh.seek(start)
        except BaseException:
            fh.close()
            raise
        return _Slice(fh, length)

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        with self.open(key) as src:
            copy_to_file(src, path)

    def delete(self, key: str) -> None:
        with suppress(FileNotFoundError, NotADirectoryError, IsADirectoryError):
            self._path(key).unlink()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        top = self.root / prefix.rpartition("/")[0]  # walk only below the prefix's folder
        if not top.is_dir():
            return []
        keys = (
            p.relative_to(self.root).as_posix()
            for p in top.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
        return sorted(k for k in keys if k.startswith(prefix))

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        return path.stat().st_size

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        validate_key(key)
        return None

    def sweep_partial(self, max_age_s: float) -> int:
        """Remove ``.part`` files whose writer was a process of this host that is gone, and
        any other ``.part`` file not written to for ``max_age_s`` seconds."""
        removed = 0
        oldest = time.time() - max_age_s
        for folder, _, names in os.walk(self.root):
            for name in names:
                if not name.endswith(".part"):
                    continue
                path = os.path.join(folder, name)
                found = _PARTIAL.match(name)
                gone = (
                    found is not None
                    and found["host"] == _HOST_TAG
                    and not _alive(int(found["pid"]))
                )
                try:
                    if gone or os.lstat(path).st_mtime < oldest:
                        os.unlink(path)
                        removed += 1
                except OSError:
                    pass  # renamed into place or removed meanwhile
        return removed

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"the store directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"the store directory {self.root} is not writable")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_files(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Slice(io.RawIOBase):
    """The next ``length`` bytes of an open file, as a stream of their own."""

    def __init__(self, fh: BinaryIO, length: int):
        self._fh = fh
        self._left = length

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1, /) -> bytes:
        n = self._left if n is None or n < 0 else min(n, self._left)
        chunk = self._fh.read(n)
        self._left -= len(chunk)
        return chunk

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._fh.close()
        super().close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""Object storage for learnware packages: one interface, two backends.

- :class:`LocalStore`: files under a directory (the embedded market);
- :class:`S3Store`: a bucket on any S3-compatible service (MinIO, AWS, Ceph).

Both behave the same way for every caller:

- ``put`` streams: it reads the source in chunks, hashes what it reads, and stops with
  :class:`ObjectTooLarge` as soon as more than ``max_bytes`` have arrived. An object becomes
  visible whole or not at all (a renamed temporary file; a single PUT or a multipart upload
  that is completed, or aborted on any error), so a reader never sees a partial package.
- ``open`` returns a readable binary stream (``read(n)``, ``close()``, a context manager);
  the caller reads it in chunks and closes it.
- Keys are ``/``-separated names of ``[A-Za-z0-9._-]`` characters, checked by
  :func:`validate_key` on both backends, so a key that works on one works on the other and a
  key can never leave the local store's root.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

if TYPE_CHECKING:
    from wharf.market.settings import Settings

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


# -- local directory ----------------------------------------------------------------------


class LocalStore(ObjectStore):
    """Objects as files under ``root`` (created if missing); keys map to relative paths.

    A put writes a hidden temporary file next to the target, fsyncs it, renames it into
    place and fsyncs the directory: a crash leaves either the old object or the new one.
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
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
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
                tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.part")
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

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"the store directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreUnavailable(f"the store directory {self.root} is not writable")


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


def _fsync_files(paths: list[str]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


# -- S3 -----------------------------------------------------------------------------------


class S3Store(ObjectStore):
    """Objects in an S3 bucket (AWS, MinIO, Ceph RGW …).

    Parameters
    ----------
    bucket : str
    endpoint_url : str, optional
        For services other than AWS (``http://minio:9000``); path-style addressing is used
        then, which every S3-compatible server accepts.
    region, access_key_id, secret_access_key : str, optional
        Without keys, boto3's usual chain (environment, config files, instance role) applies.
    create_bucket : bool
        Create the bucket now if it does not exist (development and tests).
    public_endpoint_url : str, optional
        The endpoint clients outside the deployment reach the store at; download links are
        signed for it (the signature covers the host). Defaults to ``endpoint_url``.
    connect_timeout, read_timeout : float
        Seconds, per HTTP attempt.
    max_attempts : int
        Attempts per request (botocore "standard" retries: backoff, transient errors only).
    part_size : int
        Multipart part size and threshold. At most ``part_size * (max_concurrency + 1)``
        bytes of an upload are held in memory at once.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        create_bucket: bool = False,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 5,
        part_size: int = 8 * MiB,
        max_concurrency: int = 4,
        public_endpoint_url: str | None = None,
    ):
        import boto3
        from boto3.s3.transfer import TransferConfig

        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self._timeouts = (connect_timeout, read_timeout)
        self._client = self._make_client(max_attempts, connect_timeout, read_timeout)
        self._signer = (
            self._make_client(1, connect_timeout, read_timeout, endpoint=public_endpoint_url)
            if public_endpoint_url and public_endpoint_url != endpoint_url
            else self._client
        )
        self._probe: Any = None  # made on first check()
        self._transfer = TransferConfig(
            multipart_threshold=part_size,
            multipart_chunksize=part_size,
            max_concurrency=max_concurrency,
            use_threads=True,
        )
        # Parts read from a non-seekable stream and waiting for a thread; bounds memory.
        self._transfer.max_in_memory_upload_chunks = max_concurrency
        if create_bucket:
            self.ensure_bucket()

    def _make_client(
        self,
        attempts: int,
        connect_timeout: float,
        read_timeout: float,
        endpoint: str | None = None,
    ) -> Any:
        from botocore.config import Config

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": "path"} if self.endpoint_url else {},
            # Newer boto3 adds CRC checksums to every request by default; several
            # S3-compatible servers reject them. Send them only where S3 requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
        )
        return self._session.client("s3", endpoint_url=endpoint or self.endpoint_url, config=config)

    def __repr__(self) -> str:
        where = self.endpoint_url or f"AWS {self.region}"
        return f"S3Store({self.bucket!r}, {where})"

    @contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Translate botocore's exceptions into the store's."""
        from botocore.exceptions import (
            ClientError,
            HTTPClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            yield
        except ClientError as exc:
            raise self._client_error(exc, key) from exc
        except (BotoConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(f"cannot reach S3 at {self._where()}: {exc}") from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StoreUnavailable(f"no usable S3 credentials: {exc}") from exc

    def _where(self) -> str:
        return self.endpoint_url or f"AWS region {self.region}"

    def _client_error(self, exc: Any, key: str | None) -> StoreError:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "NoSuchBucket" or (key is None and status == 404):
            return StoreUnavailable(f"the bucket {self.bucket!r} does not exist at {self._where()}")
        if key is not None and (code in ("NoSuchKey", "NotFound", "404") or status == 404):
            return ObjectNotFound(key)
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            return StoreUnavailable(f"S3 at {self._where()} failed: {code} {error.get('Message')}")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or status == 403:
            return StoreUnavailable(f"S3 refused access to bucket {self.bucket!r}: {code}")
        return StoreError(f"S3 error on {key or self.bucket!r}: {code} {error.get('Message')}")

    def ensure_bucket(self) -> None:
        """Create the bucket unless it already exists and is ours."""
        from botocore.exceptions import ClientError

        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        with self._errors():
            try:
                self._client.create_bucket(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    def put(
        self, key: str, stream: Readable, *, max_bytes: int | None = None, durable: bool = True
    ) -> StoredObject:
        validate_key(key)
        reader = _MeteredReader(key, stream, max_bytes)
        with self._errors(None):
            self._client.upload_fileobj(reader, self.bucket, key, Config=self._transfer)
        return reader.stored()

    def open(self, key: str) -> BinaryIO:
        validate_key(key)
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=key)
        return response["Body"]  # botocore's StreamingBody: read(n), close(), iter_chunks()

    def open_range(self, key: str, start: int, length: int) -> BinaryIO:
        validate_key(key)
        if start < 0 or length < 0 or (length == 0 and self.size(key) < start):
            raise StoreError(f"bytes {start} to {start + length} of {key!r} cannot be read")
        if length == 0:  # S3 has no empty range
            return io.BytesIO(b"")
        with self._errors(key):
            response = self._client.get_object(
                Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
            )
        if int(response["ContentLength"]) != length:
            response["Body"].close()
            raise StoreError(
                f"bytes {start} to {start + length} of {key!r} were asked for, but it is shorter"
            )
        return response["Body"]

    def download_to(self, key: str, path: str | os.PathLike[str]) -> None:
        validate_key(key)
        with self._errors(key):
            # s3transfer writes a temporary file beside ``path`` and renames it when complete.
            self._client.download_file(self.bucket, key, os.fspath(path), Config=self._transfer)

    def delete(self, key: str) -> None:
        validate_key(key)
        with self._errors(None):
            self._client.delete_object(Bucket=self.bucket, Key=key)

    def _head(self, key: str) -> dict[str, Any]:
        validate_key(key)
        with self._errors(key):
            return self._client.head_object(Bucket=self.bucket, Key=key)

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
        except ObjectNotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(key)["ContentLength"])

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        with self._errors():
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", ()))
        return sorted(keys)

    def presigned_url(self, key: str, expires_s: int) -> str | None:
        validate_key(key)
        with self._errors(key):
            return self._signer.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=int(expires_s),
            )

    def check(self) -> None:
        if self._probe is None:
            # Readiness probes must answer fast: one attempt, short timeouts.
            connect_timeout, read_timeout = self._timeouts
            self._probe = self._make_client(1, min(connect_timeout, 2.0), min(read_timeout, 5.0))
        with self._errors():
            self._probe.head_bucket(Bucket=self.bucket)


def make_store(settings: Settings, *, create_bucket: bool = False) -> ObjectStore:
    """The store the settings name: ``WHARF_STORE=local`` (default) or ``s3``."""
    if settings.store == "local":
        return LocalStore(settings.objects_dir)

    def secret(value: Any) -> str | None:
        return value.get_secret_value() if value is not None else None

    return S3Store(
        settings.s3_bucket,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=secret(settings.s3_access_key_id),
        secret_access_key=secret(settings.s3_secret_access_key),
        create_bucket=create_bucket,
        public_endpoint_url=settings.s3_public_endpoint_url,
    )

"""Objects in an S3 bucket on any S3-compatible service; boto3 is imported on first use."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

from .base import (
    MiB,
    ObjectNotFound,
    ObjectStore,
    Readable,
    StoredObject,
    StoreError,
    StoreUnavailable,
    _MeteredReader,
    validate_key,
)


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

    def sweep_partial(self, max_age_s: float) -> int:
        """Abort the multipart uploads started more than ``max_age_s`` seconds ago and never
        completed (their writer was killed): S3 keeps, and bills, their parts until then."""
        oldest = datetime.now(UTC) - timedelta(seconds=max_age_s)
        aborted = 0
        with self._errors():
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket
            )
            stale = [
                (upload["Key"], upload["UploadId"])
                for page in pages
                for upload in page.get("Uploads", ())
                if upload["Initiated"] < oldest
            ]
            for key, upload_id in stale:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                aborted += 1
        return aborted

    def check(self) -> None:
        if self._probe is None:
            # Readiness probes must answer fast: one attempt, short timeouts.
            connect_timeout, read_timeout = self._timeouts
            self._probe = self._make_client(1, min(connect_timeout, 2.0), min(read_timeout, 5.0))
        with self._errors():
            self._probe.head_bucket(Bucket=self.bucket)

"""The object store on a local directory and on S3 (a moto server over HTTP)."""

from __future__ import annotations

import hashlib
import io
import time
import urllib.request
from pathlib import Path

import boto3
import pytest
from wharf.market.settings import Settings
from wharf.market.store import (
    CHUNK_BYTES,
    InvalidKey,
    LocalStore,
    MiB,
    ObjectNotFound,
    ObjectStore,
    ObjectTooLarge,
    S3Store,
    StoreError,
    StoreUnavailable,
    make_store,
)


class GeneratedStream:
    """``size`` pseudo-random bytes made on demand: the whole never exists in memory.

    Records every ``read`` request so a test can see how the store consumed it.
    """

    def __init__(self, size: int, seed: int = 0):
        self.size = size
        self.seed = seed
        self.position = 0
        self.requests: list[int] = []

    def _block(self, index: int) -> bytes:
        return hashlib.sha256(f"{self.seed}:{index}".encode()).digest() * 2048  # 64 KiB

    def read(self, n: int = -1) -> bytes:
        self.requests.append(n)
        if n is None or n < 0:
            n = self.size - self.position
        out = bytearray()
        while len(out) < n and self.position < self.size:
            block, offset = divmod(self.position, 65536)
            piece = self._block(block)[offset : offset + min(n - len(out), 65536 - offset)]
            piece = piece[: self.size - self.position]
            out += piece
            self.position += len(piece)
        return bytes(out)

    def sha256(self) -> str:
        digest, copy = hashlib.sha256(), GeneratedStream(self.size, self.seed)
        while chunk := copy.read(MiB):
            digest.update(chunk)
        return digest.hexdigest()


def read_all(store: ObjectStore, key: str) -> bytes:
    with store.open(key) as stream:
        return b"".join(iter(lambda: stream.read(256 * 1024), b""))


def no_partial_uploads(store: ObjectStore) -> bool:
    if isinstance(store, S3Store):
        uploads = store._client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])
        return uploads == []
    return not [p for p in Path(store.root).rglob("*") if p.name.startswith(".")]


def test_round_trip_of_a_multi_megabyte_stream(object_store: ObjectStore, tmp_path: Path):
    data = GeneratedStream(9 * MiB + 123, seed=1).read()
    stored = object_store.put("packages/a/b.zip", io.BytesIO(data))
    assert stored.key == "packages/a/b.zip"
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    assert object_store.exists("packages/a/b.zip") and object_store.size("packages/a/b.zip") == (
        len(data)
    )
    assert read_all(object_store, "packages/a/b.zip") == data
    object_store.download_to("packages/a/b.zip", tmp_path / "copy.zip")
    assert (tmp_path / "copy.zip").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["copy.zip"]

    object_store.put("packages/a/b.zip", io.BytesIO(b"replaced"))
    assert read_all(object_store, "packages/a/b.zip") == b"replaced"
    object_store.delete("packages/a/b.zip")
    object_store.delete("packages/a/b.zip")  # idempotent
    assert not object_store.exists("packages/a/b.zip")


def test_a_byte_range_reads_as_a_stream_of_its_own(object_store: ObjectStore):
    data = GeneratedStream(3 * MiB + 17, seed=3).read()
    object_store.put("packs/p.tar", io.BytesIO(data))
    start, length = MiB - 5, 2 * MiB + 9
    with object_store.open_range("packs/p.tar", start, length) as fh:
        chunks = iter(lambda: fh.read(64 * 1024), b"")
        assert b"".join(chunks) == data[start : start + length]
    with object_store.open_range("packs/p.tar", len(data) - 3, 3) as fh:
        assert fh.read() == data[-3:] and fh.read() == b""
    with object_store.open_range("packs/p.tar", 7, 0) as fh:
        assert fh.read() == b""
    with pytest.raises(StoreError) as err:
        object_store.open_range("packs/p.tar", len(data) - 3, 4).read()
    assert not isinstance(err.value, ObjectNotFound)
    with pytest.raises(ObjectNotFound):
        object_store.open_range("packs/missing.tar", 0, 4)


def test_empty_object(object_store: ObjectStore):
    stored = object_store.put("empty", io.BytesIO(b""))
    assert (stored.size, stored.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert read_all(object_store, "empty") == b""


def test_a_short_lived_object_is_stored_whole(object_store: ObjectStore):
    object_store.put("searches/s.json", io.BytesIO(b'{"z": []}'), durable=False)
    assert object_store.open("searches/s.json").read() == b'{"z": []}'
    assert not [k for k in object_store.list("searches/") if k != "searches/s.json"]


def test_put_streams_the_source_in_bounded_reads(object_store: ObjectStore):
    source = GeneratedStream(20 * MiB, seed=2)
    stored = object_store.put("big.bin", source, max_bytes=64 * MiB)
    assert stored.size == 20 * MiB and stored.sha256 == source.sha256()
    # Read piece by piece, never "everything": 1 MiB chunks locally, one part at a time on S3.
    largest = CHUNK_BYTES if isinstance(object_store, LocalStore) else 8 * MiB
    assert all(0 < n <= largest for n in source.requests)
    assert len(source.requests) >= 20 * MiB // largest
    with object_store.open("big.bin") as stream:
        digest = hashlib.sha256()
        while chunk := stream.read(MiB):
            digest.update(chunk)
    assert digest.hexdigest() == stored.sha256


@pytest.mark.parametrize("size,limit", [(3 * MiB, 1 * MiB), (20 * MiB, 12 * MiB)])
def test_too_large_leaves_nothing_behind(object_store: ObjectStore, size: int, limit: int):
    """The second case is past the multipart threshold: the S3 upload must be aborted."""
    source = GeneratedStream(size, seed=3)
    with pytest.raises(ObjectTooLarge, match=f"limit of {limit} bytes") as info:
        object_store.put("too/large.zip", source, max_bytes=limit)
    assert info.value.limit == limit
    assert source.position <= limit + 1  # it stopped reading at the limit
    assert not object_store.exists("too/large.zip")
    assert no_partial_uploads(object_store)


def test_a_failed_replace_keeps_the_previous_object(object_store: ObjectStore):
    object_store.put("kept", io.BytesIO(b"old"))
    with pytest.raises(ObjectTooLarge):
        object_store.put("kept", io.BytesIO(b"x" * 100), max_bytes=10)
    assert read_all(object_store, "kept") == b"old"
    assert object_store.put("exact", io.BytesIO(b"x" * 10), max_bytes=10).size == 10


def test_missing_objects(object_store: ObjectStore, tmp_path: Path):
    with pytest.raises(ObjectNotFound, match="nope"):
        object_store.open("nope")
    with pytest.raises(ObjectNotFound):
        object_store.size("nope")
    with pytest.raises(ObjectNotFound):
        object_store.download_to("nope", tmp_path / "out")
    assert not object_store.exists("nope")
    assert not (tmp_path / "out").exists()
    object_store.delete("nope")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../escape",
        "a/../../b",
        "a//b",
        "a/",
        "./a",
        ".hidden",
        "a/.tmp",
        "a\\b",
        "C:\\x",
        "é",
        "a b",
        "a\x00b",
        "x" * 1025,
    ],
)
def test_unsafe_keys_are_refused(object_store: ObjectStore, key: str):
    with pytest.raises(InvalidKey):
        object_store.put(key, io.BytesIO(b"x"))
    for operation in (object_store.open, object_store.exists, object_store.delete):
        with pytest.raises(InvalidKey):
            operation(key)


def test_local_keys_stay_under_the_root(tmp_path: Path):
    store = LocalStore(tmp_path / "root")
    store.put("a/b/c.txt", io.BytesIO(b"x"))
    assert (tmp_path / "root" / "a" / "b" / "c.txt").read_bytes() == b"x"
    assert store.presigned_url("a/b/c.txt", 60) is None
    store.check()


def test_presigned_url_downloads_the_object(s3_store: S3Store):
    data = GeneratedStream(MiB + 7, seed=4).read()
    s3_store.put("pkg/1.zip", io.BytesIO(data))
    url = s3_store.presigned_url("pkg/1.zip", 60)
    assert url is not None and url.startswith(s3_store.endpoint_url)
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data


def test_check(object_store: ObjectStore):
    object_store.check()


def test_check_fails_fast_when_s3_is_down(closed_port: int, s3_credentials: dict):
    store = S3Store(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{closed_port}",
        connect_timeout=1,
        read_timeout=1,
        **s3_credentials,
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot reach S3"):
        store.check()
    assert time.monotonic() - started < 5
    with pytest.raises(StoreUnavailable):
        store.put("k", io.BytesIO(b"x"))


def test_check_reports_a_missing_bucket(s3_endpoint: str, s3_credentials: dict):
    store = S3Store("no-such-bucket", endpoint_url=s3_endpoint, **s3_credentials)
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.check()
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.put("k", io.BytesIO(b"x"))


def test_make_store_from_settings(tmp_path: Path, s3_endpoint: str, s3_credentials: dict):
    local = make_store(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "objects").resolve()

    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
    ).create_bucket(Bucket="from-settings")
    settings = Settings(
        store="s3",
        s3_bucket="from-settings",
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id=s3_credentials["access_key_id"],
        s3_secret_access_key=s3_credentials["secret_access_key"],
    )
    store = make_store(settings)
    assert isinstance(store, S3Store)
    store.check()
    store.put("x", io.BytesIO(b"hello"))
    assert read_all(store, "x") == b"hello"


def test_download_links_are_signed_for_the_public_endpoint(s3_endpoint, s3_credentials):
    """Clients outside the deployment reach the store at another address than the workers."""
    import io
    import urllib.parse
    import urllib.request
    import uuid

    from wharf.market.store import S3Store

    public = s3_endpoint.replace("127.0.0.1", "localhost")
    store = S3Store(
        f"wharf-public-{uuid.uuid4().hex[:8]}",
        endpoint_url=s3_endpoint,
        public_endpoint_url=public,
        create_bucket=True,
        **s3_credentials,
    )
    store.put("a/b.bin", io.BytesIO(b"payload"))
    url = store.presigned_url("a/b.bin", 60)
    assert urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(public).netloc
    with urllib.request.urlopen(url) as response:
        assert response.read() == b"payload"

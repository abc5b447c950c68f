"""Fault drills on a real market: a worker killed mid-check, Redis restarted, the object store
down, the API killed during an upload. Each checks that the market says what is wrong while it
is wrong, recovers by itself, and loses or half-writes nothing it had accepted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from wharf.cli.serve import LocalMarket, free_port
from wharf.client import WharfClient, WharfError
from wharf.examples.learnwares import build_examples
from wharf.market.catalog import Catalog, repo
from wharf.market.settings import Settings
from wharf.specification import RKME
from wharf.specification.files import dumps_spec
from wharf.workers.app import make_celery
from wharf.workers.recovery import requeue
from wharf.workers.tasks import SANDBOX_RETRIES

pytestmark = [pytest.mark.slow, pytest.mark.services]


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture
def embedded(monkeypatch):
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WHARF_RATE_LIMIT_ENABLED", "false")


class RedisServer:
    """A redis-server of the test's own, so it can be stopped and started again."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.dir = tmp
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed (scripts/services installs it)")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def _slow_package(tmp_path: Path, ex, seconds: float) -> Path:
    """The example's package with a model whose predict sleeps first."""
    out = tmp_path / f"slow-{ex.name.replace(' ', '-')}.zip"
    with zipfile.ZipFile(ex.package) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("__init__.py"):
                text = data.decode()
                sleep = f"        import time\n        time.sleep({seconds})\n"
                text = text.replace(
                    "    def predict(self, X):\n", "    def predict(self, X):\n" + sleep
                )
                data = text.encode()
            dst.writestr(info, data)
    return out


def _pool_children(market: LocalMarket) -> list[int]:
    """PIDs of the Celery pool processes (the children of each worker's main process)."""
    pids = []
    for proc in market.procs:
        out = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True)
        pids += [int(p) for p in out.stdout.split()]
    return pids


def test_a_worker_killed_mid_check_still_finishes_the_job_once(
    examples, tmp_path, embedded, monkeypatch
):
    redis = RedisServer(tmp_path)
    redis.start()
    monkeypatch.setenv("WHARF_BROKER_URL", redis.url)
    ex = examples[0]
    try:
        with LocalMarket(tmp_path / "m", workers=2) as m, WharfClient(m.url, m.token) as c:
            worker_pids = {p.pid for p in m.procs[:2]}
            sub = c.submit(_slow_package(tmp_path, ex, 3.0), ex.semantic)
            deadline = time.monotonic() + 60
            while c.learnware(sub["learnware_id"])["status"] != "checking":
                assert time.monotonic() < deadline, "the check never started"
                time.sleep(0.1)
            time.sleep(0.5)
            killed = [pid for pid in _pool_children(m) if pid not in worker_pids]
            assert killed
            for pid in killed:  # the process running the check dies without a word
                os.kill(pid, signal.SIGKILL)
            job = c.wait(sub["job_id"], timeout=240)
            assert job["state"] == "succeeded"
            assert job["attempts"] >= 2  # it ran again after the kill
            assert c.learnware(sub["learnware_id"])["status"] == "accepted"
            catalog = Catalog(Settings(data_dir=tmp_path / "m").catalog_url)
            with catalog.session() as s:
                assert repo.learnware_counts(s).get("accepted") == 1
                adds = repo.index_changes_after(s, 0)
            assert [lid for _, lid in adds] == [repo.parse_id(sub["learnware_id"])]
    finally:
        redis.stop()


def test_a_check_worker_that_loses_its_sandbox_rejects_nothing(
    examples, tmp_path, embedded, monkeypatch
):
    """bubblewrap disappears from a running check worker: the check goes back to the queue,
    then its job fails saying why; the learnware stays pending (not rejected), and is accepted
    once the sandbox is back and its check is queued again."""
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap is not installed (scripts/services installs it)"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "bwrap").symlink_to(bwrap)
    monkeypatch.setenv("PATH", str(bindir))  # the market's only bwrap
    ex = examples[0]
    with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
        settings = Settings(data_dir=m.data_dir)
        celery = make_celery(settings)
        deadline = time.monotonic() + 60
        while not celery.control.ping(timeout=1.0):  # the worker has started (sandbox probed)
            assert time.monotonic() < deadline, "the worker did not start"
        (bindir / "bwrap").unlink()
        sub = c.submit(ex.package, ex.semantic)
        deadline = time.monotonic() + 120
        while (job := c.job(sub["job_id"]))["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["state"] == "failed" and "sandbox unavailable" in job["error"], job
        assert job["attempts"] == 1 + SANDBOX_RETRIES
        assert c.learnware(sub["learnware_id"])["status"] == "pending"

        (bindir / "bwrap").symlink_to(bwrap)
        catalog = Catalog(settings.catalog_url)
        assert requeue(catalog, celery, settings).rechecked == [sub["learnware_id"]]
        deadline = time.monotonic() + 120
        while (status := c.learnware(sub["learnware_id"])["status"]) in ("pending", "checking"):
            assert time.monotonic() < deadline, status
            time.sleep(0.2)
        assert status == "accepted"


def test_redis_restarted_the_api_answers_503_then_recovers(
    examples, tmp_path, embedded, monkeypatch
):
    redis = RedisServer(tmp_path)
    redis.start()
    monkeypatch.setenv("WHARF_BROKER_URL", redis.url)
    ex = next(e for e in examples if e.name == "digits 5-9")
    spec = RKME(n_points=20, seed=1).fit(ex.X_test)
    try:
        with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
            sub = c.submit(ex.package, ex.semantic)
            c.wait(sub["job_id"], timeout=180)
            before = c.wait(c.start_search(spec=spec, top=3), timeout=120)

            redis.stop()
            r = c.http.post("/v1/searches", files={"stat_spec": ("s.json", dumps_spec(spec))})
            assert r.status_code == 503, r.text
            assert "broker" in r.json()["detail"].lower()
            assert httpx.get(f"{m.url}/readyz").status_code == 503
            # What the catalog holds is still served.
            assert c.learnware(sub["learnware_id"])["status"] == "accepted"
            assert c.job(before["id"])["result"] == before["result"]

            redis.start()  # an empty Redis: nothing of the market lived only there
            deadline = time.monotonic() + 60
            while httpx.get(f"{m.url}/readyz").status_code != 200:
                assert time.monotonic() < deadline, "the API did not recover"
                time.sleep(0.5)
            after = c.wait(c.start_search(spec=spec, top=3), timeout=120)
            assert after["result"]["singles"][0]["id"] == sub["learnware_id"]
            assert c.job(before["id"])["result"] == before["result"]
    finally:
        redis.stop()


def test_the_store_down_gives_503_and_records_nothing(
    examples, tmp_path, embedded, monkeypatch, closed_port, s3_credentials
):
    from fastapi.testclient import TestClient
    from wharf.api.app import create_app

    monkeypatch.setenv("WHARF_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WHARF_STORE", "s3")
    monkeypatch.setenv("WHARF_S3_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("WHARF_S3_ACCESS_KEY_ID", s3_credentials["access_key_id"])
    monkeypatch.setenv("WHARF_S3_SECRET_ACCESS_KEY", s3_credentials["secret_access_key"])
    settings = Settings()
    catalog = Catalog.create(settings.catalog_url)
    with catalog.session() as s:
        user = repo.create_user(s, "dev")
        token, _ = repo.create_token(s, user.id, "t")
    ex = examples[0]
    started = time.monotonic()
    with TestClient(create_app(settings)) as client:
        with open(ex.package, "rb") as f:
            r = client.post(
                "/v1/learnwares",
                headers={"Authorization": f"Bearer {token}"},
                files={"package": ("p.zip", f, "application/zip")},
                data={"semantic_spec": json.dumps(ex.semantic)},
            )
    assert r.status_code == 503, r.text
    assert "store is unavailable" in r.json()["detail"] and r.headers["Retry-After"]
    assert time.monotonic() - started < 60  # retried with backoff, then gave up
    with catalog.session() as s:
        assert sum(repo.learnware_counts(s).values()) == 0  # nothing half-recorded
        assert sum(repo.job_counts(s).values()) == 0


def test_the_api_killed_during_an_upload_accepts_no_partial_package(examples, tmp_path, embedded):
    ex = examples[0]
    body_file = ex.package.read_bytes()
    with LocalMarket(tmp_path / "m", workers=0) as m:
        boundary = "wharfboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="package"; '
            f'filename="p.zip"\r\nContent-Type: application/zip\r\n\r\n'
        ).encode()
        total = len(head) + len(body_file) + 200
        sock = socket.create_connection(("127.0.0.1", m.port))
        sock.sendall(
            (
                f"POST /v1/learnwares HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {m.token}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {total}\r\n\r\n"
            ).encode()
            + head
            + body_file[: len(body_file) // 2]
        )
        time.sleep(0.5)
        api = m.procs[-1]
        os.killpg(api.pid, signal.SIGKILL)  # the API dies with half the package received
        api.wait()
        sock.close()
    # Start the market again on the same data: nothing of the upload is in it.
    with LocalMarket(tmp_path / "m", workers=0) as m, WharfClient(m.url, m.token) as c:
        assert c.learnwares()["total"] == 0
        objects = [p for p in (tmp_path / "m").rglob("packages/*") if not p.name.startswith(".")]
        assert objects == []
        sub = c.submit(ex.package, ex.semantic)  # and the same package can be sent again
        assert sub["status"] == "pending"


def _job_row(data_dir: Path, job_id: str):
    with Catalog(Settings(data_dir=data_dir).catalog_url).session(read_only=True) as s:
        return repo.get_job(s, job_id)


def test_a_whole_worker_killed_mid_check_resumes_within_a_minute(
    examples, tmp_path, embedded, monkeypatch
):
    """The worker process and its pool die together: Redis would hand the check to another
    worker only after its visibility timeout (21 minutes); the other worker's reaper sees the
    job's heartbeat stop and sends it again."""
    redis = RedisServer(tmp_path)
    redis.start()
    monkeypatch.setenv("WHARF_BROKER_URL", redis.url)
    ex = examples[0]
    try:
        with LocalMarket(tmp_path / "m", workers=2) as m, WharfClient(m.url, m.token) as c:
            sub = c.submit(_slow_package(tmp_path, ex, 4.0), ex.semantic)
            deadline = time.monotonic() + 60
            while (job := _job_row(m.data_dir, sub["job_id"])).worker is None:
                assert time.monotonic() < deadline, "the check never started"
                time.sleep(0.1)
            pool_pid = int(job.worker.rpartition(":")[2])
            holder = next(
                p for p in m.procs[:2] if pool_pid in _pool_children_of(p.pid) or p.pid == pool_pid
            )
            os.killpg(holder.pid, signal.SIGKILL)  # the worker and its pool, without a word
            killed_at = time.monotonic()
            job = c.wait(sub["job_id"], timeout=120)
            recovered_s = time.monotonic() - killed_at
            assert job["state"] == "succeeded", job
            assert c.learnware(sub["learnware_id"])["status"] == "accepted"
            assert recovered_s < 60, recovered_s  # 30 s of silence, a reaper pass, the check
            assert _job_row(m.data_dir, sub["job_id"]).worker_losses == 1
    finally:
        redis.stop()


def _pool_children_of(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.adversarial
def test_a_check_that_keeps_killing_its_worker_is_given_up_with_a_reason(
    examples, tmp_path, embedded, monkeypatch
):
    """A poison message: every process that runs this check dies. After
    WHARF_JOB_MAX_WORKER_LOSSES losses the job fails and the learnware is rejected, both saying
    why, instead of being delivered for ever; the market still accepts an honest package."""
    redis = RedisServer(tmp_path)
    redis.start()
    monkeypatch.setenv("WHARF_BROKER_URL", redis.url)
    ex = examples[0]
    try:
        with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
            sub = c.submit(_slow_package(tmp_path, ex, 30.0), ex.semantic)
            killed: set[str] = set()
            deadline = time.monotonic() + 180
            while (job := c.job(sub["job_id"]))["state"] not in ("succeeded", "failed"):
                assert time.monotonic() < deadline, job
                row = _job_row(m.data_dir, sub["job_id"])
                if row.state == "running" and row.worker and row.worker not in killed:
                    time.sleep(0.5)  # let it get into the model run
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(row.worker.rpartition(":")[2]), signal.SIGKILL)
                    killed.add(row.worker)
                time.sleep(0.1)
            assert job["state"] == "failed", job
            assert "lost 3 times" in job["error"], job
            assert len(killed) == 3
            lw = c.learnware(sub["learnware_id"])
            assert lw["status"] == "rejected"
            assert "lost 3 times" in c.http.get(f"/v1/learnwares/{lw['id']}/log").text

            honest = c.submit(ex.package, ex.semantic)
            assert c.wait(honest["job_id"], timeout=180)["state"] == "succeeded"
            assert c.learnware(honest["learnware_id"])["status"] == "accepted"
    finally:
        redis.stop()


def _job_state(data_dir: Path, job_id: str) -> str:
    return str(_job_row(data_dir, job_id).state)


def _wait_ended(data_dir: Path, ids: list[str], timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while True:
        states = {j: _job_state(data_dir, j) for j in ids}
        if all(s not in ("queued", "running") for s in states.values()):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(0.3)


def test_redis_restarted_without_persistence_loses_no_queued_job(
    examples, tmp_path, embedded, monkeypatch
):
    """Redis comes back empty while checks and searches wait in it: the workers' reconciler
    finds the jobs whose message is gone and sends them again; every one ends."""
    redis = RedisServer(tmp_path)  # --save "" --appendonly no
    redis.start()
    monkeypatch.setenv("WHARF_BROKER_URL", redis.url)
    monkeypatch.setenv("WHARF_JOB_LOST_AFTER_S", "6")  # a reconciler pass every 2 s
    ex = examples[0]
    requirement = {"Name": {"Type": "String", "Values": "digits"}}
    try:
        with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
            slow = _slow_package(tmp_path, ex, 2.0)
            ids = [c.submit(slow, ex.semantic)["job_id"]]
            deadline = time.monotonic() + 60
            while _job_state(m.data_dir, ids[0]) != "running":  # the worker is busy...
                assert time.monotonic() < deadline
                time.sleep(0.1)
            ids.append(c.submit(ex.package, ex.semantic)["job_id"])  # ...and these wait
            ids += [c.start_search(semantic=requirement) for _ in range(3)]
            redis.stop()
            redis.start()  # empty
            states = _wait_ended(m.data_dir, ids, timeout=180)
            assert set(states.values()) == {"succeeded"}, states
            resent = [_job_row(m.data_dir, j).request.get("lost_messages") for j in ids[1:]]
            assert all(n == 1 for n in resent), resent  # each was sent again once
    finally:
        redis.stop()


def _scratch_left(tmp: Path) -> list[Path]:
    """What worker processes that are gone left in the scratch folder of ``tmp``."""
    left = []
    for host in (tmp / "wharf-scratch").glob("*"):
        for folder in host.iterdir():
            pid = int(folder.name.partition("-")[0])
            if not Path(f"/proc/{pid}").exists():
                left.append(folder)
    return left


def test_checks_killed_again_and_again_leave_no_scratch_behind(
    examples, tmp_path, embedded, monkeypatch
):
    """Every process that runs this check is killed (SIGKILL), until the loss limit gives it
    up: the folder each one worked in is swept, nothing else of them stays on disk."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("WHARF_JOB_LOST_AFTER_S", "6")
    ex = examples[0]
    with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
        sub = c.submit(_slow_package(tmp_path, ex, 30.0), ex.semantic)
        killed: set[str] = set()
        deadline = time.monotonic() + 180
        while _job_state(m.data_dir, sub["job_id"]) in ("queued", "running"):
            assert time.monotonic() < deadline
            row = _job_row(m.data_dir, sub["job_id"])
            pid = int(row.worker.rpartition(":")[2]) if row.worker else None
            if row.state == "running" and pid and row.worker not in killed:
                folder = next((tmp / "wharf-scratch").glob(f"*/{pid}-*"), None)
                if folder is not None and list(folder.glob("wharf-check-*/package.zip")):
                    time.sleep(0.5)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed.add(row.worker)
            time.sleep(0.1)
        assert len(killed) == 3 and "lost 3 times" in c.job(sub["job_id"])["error"]
        deadline = time.monotonic() + 30
        while _scratch_left(tmp):  # the next reconciler pass sweeps the last one
            assert time.monotonic() < deadline, _scratch_left(tmp)
            time.sleep(0.5)
        assert not list(tmp.glob("wharf-check-*"))  # nothing outside the scratch folders
    assert _scratch_left(tmp) == []  # a worker stopped cleanly removes its own


def _sandboxes() -> list[int]:
    """Processes running a sandboxed model (bwrap's, or the model's child program)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if b"bwrap" in (entry / "cmdline").read_bytes().split(b"\0")[0]:
                    found.append(int(entry.name))
    return found


def test_a_running_check_cancelled_kills_its_sandbox_and_leaves_a_learnware_to_act_on(
    examples, tmp_path, embedded, monkeypatch
):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setenv("WHARF_JOB_HEARTBEAT_S", "1")
    ex = examples[0]
    before = set(_sandboxes())
    with LocalMarket(tmp_path / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
        sub = c.submit(_slow_package(tmp_path, ex, 120.0), ex.semantic)
        deadline = time.monotonic() + 90
        while not (running := set(_sandboxes()) - before):  # the model is running
            assert time.monotonic() < deadline, c.job(sub["job_id"])
            time.sleep(0.2)
        job = c.cancel(sub["job_id"])
        assert job["state"] == "cancelled" and job["error"] == "cancelled by admin"
        cancelled_at = time.monotonic()
        while running & set(_sandboxes()):
            assert time.monotonic() - cancelled_at < 15, "the sandbox still runs"
            time.sleep(0.2)
        lw = c.learnware(sub["learnware_id"])
        assert lw["status"] == "rejected"
        assert "cancelled by admin" in c.log(sub["learnware_id"])
        deadline = time.monotonic() + 15
        while list(tmp.glob("wharf-scratch/*/*/wharf-check-*")):  # its folder goes with it
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # the worker lives on: the same learnware, sent again with a fixed package, passes
        again = c.update(sub["learnware_id"], package=ex.package)
        assert c.wait(again["job_id"], timeout=180)["state"] == "succeeded"
        assert c.learnware(sub["learnware_id"])["status"] == "accepted"
        assert _job_row(m.data_dir, sub["job_id"]).state == "cancelled"  # nothing recorded


def test_the_api_killed_while_it_stores_a_package_leaves_no_part_file(
    examples, tmp_path, embedded, monkeypatch
):
    """The API dies while the package streams into the store: the next API's start removes
    the half-written file, and the package can be sent again."""
    monkeypatch.setenv("WHARF_MAX_UPLOAD_BYTES", str(400 * 1024 * 1024))
    ex = examples[0]
    objects = tmp_path / "m" / "objects"
    caught = None
    for attempt in range(3):
        big = tmp_path / f"big{attempt}.zip"
        with zipfile.ZipFile(ex.package) as src, zipfile.ZipFile(big, "w") as dst:
            for info in src.infolist():
                dst.writestr(info, src.read(info))
            dst.writestr("padding.bin", os.urandom(150 * 1024 * 1024))
        with LocalMarket(tmp_path / "m", workers=0) as m:
            api = m.procs[-1]

            def send(m=m, big=big):
                with contextlib.suppress(httpx.HTTPError), open(big, "rb") as fh:
                    httpx.post(
                        f"{m.url}/v1/learnwares",
                        headers={"Authorization": f"Bearer {m.token}"},
                        files={"package": ("p.zip", fh, "application/zip")},
                        data={"semantic_spec": json.dumps(ex.semantic)},
                        timeout=120,
                    )

            sender = __import__("threading").Thread(target=send, daemon=True)
            sender.start()
            while sender.is_alive() and not caught:
                caught = next(objects.rglob("*.part"), None) if objects.exists() else None
            if caught:
                os.killpg(api.pid, signal.SIGKILL)  # the API dies mid-write
                api.wait()
            sender.join(timeout=120)
        if caught:
            break
    assert caught, "the store write was never caught in progress"
    assert caught.exists()  # left behind by the killed API
    with LocalMarket(tmp_path / "m", workers=0) as m, WharfClient(m.url, m.token) as c:
        deadline = time.monotonic() + 30
        while caught.exists():  # the API sweeps at its start
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert list(objects.rglob("*.part")) == []
        with contextlib.suppress(WharfError):  # a duplicate if the first upload had finished
            c.submit(ex.package, ex.semantic)

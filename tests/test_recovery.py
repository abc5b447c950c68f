"""Nothing stuck, nothing leaked: the reconciler that sends again the jobs whose broker message
is gone, ``wharf admin requeue``, cancelling jobs, a submission whose enqueue failed, and the
sweeps of scratch folders and partial uploads (a real catalog, the embedded broker's folder
or a real Redis; the drills with real worker processes are in tests/test_faults.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from wharf.market.catalog import Catalog, JobKind, JobState, LearnwareStatus, Role, repo
from wharf.market.catalog.models import utcnow
from wharf.market.settings import Settings
from wharf.market.store import LocalStore
from wharf.workers import liveness, reconcile, scratch
from wharf.workers.app import make_celery
from wharf.workers.recovery import requeue

from tests.test_api import SEMANTIC, auth, make_api, submit, zip_bytes


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, job_lost_after_s=30, job_max_worker_losses=2)


@pytest.fixture
def catalog(settings) -> Catalog:
    return Catalog.create(settings.catalog_url)


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


def _learnware_with_check(catalog: Catalog, sha: str = "a") -> tuple[str, int]:
    with catalog.session() as s:
        owner = repo.get_user_by_name(s, "o") or repo.create_user(s, "o", Role.user)
        lw = repo.create_learnware(s, owner.id, {}, sha * 64, f"packages/{sha}.zip", 10)
        job = repo.create_job(s, JobKind.check, owner_id=owner.id, learnware_id=lw.id)
        return job.id, lw.id


def _age(catalog: Catalog, job_id: str, seconds: float) -> None:
    """Make the job's message look sent ``seconds`` ago."""
    with catalog.session() as s:
        job = repo.get_job(s, job_id)
        job.created_at = utcnow() - timedelta(seconds=seconds)
        job.heartbeat_at = None if job.state == JobState.queued else job.heartbeat_at


def _messages(settings: Settings) -> list[Path]:
    folder = settings.broker_folder / "queue"
    return sorted(folder.glob("*.msg")) if folder.exists() else []


# -- the reconciler ------------------------------------------------------------------------------


def test_a_queued_job_whose_message_is_gone_is_sent_again_once(catalog, settings):
    celery = make_celery(settings)
    lost, _ = _learnware_with_check(catalog, "a")
    _learnware_with_check(catalog, "b")  # queued just now: not looked at yet
    kept, _ = _learnware_with_check(catalog, "c")
    _age(catalog, lost, 31)
    _age(catalog, kept, 31)
    liveness.send(celery, JobKind.check, kept, 3)  # its message waits in the broker
    assert reconcile.broker_jobs(celery, settings) == {kept}

    assert reconcile.resend_lost(catalog, celery, settings) == [lost]  # not young, not kept
    assert reconcile.broker_jobs(celery, settings) == {kept, lost}
    with catalog.session() as s:
        job = repo.get_job(s, lost)
        assert job.state == JobState.queued and job.request[repo.LOST_MESSAGES] == 1
    assert reconcile.resend_lost(catalog, celery, settings) == []  # its message is there now
    for path in _messages(settings):
        path.unlink()  # both lost (a broker restarted without persistence)
    assert reconcile.resend_lost(catalog, celery, settings) == [kept]  # lost: sent 0 s ago
    _age(catalog, lost, 31)
    held: set[str] = set()
    assert reconcile.resend_lost(catalog, celery, settings, held=held) == [lost]
    # Two reconcilers that saw the same message gone: one sends it.
    assert reconcile.resend_lost(catalog, celery, settings, held=held) == []


def test_a_job_whose_message_keeps_getting_lost_fails_saying_so(catalog, settings):
    celery = make_celery(settings)
    job_id, lid = _learnware_with_check(catalog)
    for _ in range(settings.job_max_worker_losses):
        _age(catalog, job_id, 31)
        assert reconcile.resend_lost(catalog, celery, settings, held=set()) == [job_id]
    _age(catalog, job_id, 31)
    assert reconcile.resend_lost(catalog, celery, settings, held=set()) == [job_id]
    with catalog.session() as s:
        job = repo.get_job(s, job_id)
        assert job.state == JobState.failed and "lost this job's message 2 times" in job.error
        assert repo.get_learnware(s, lid).status == LearnwareStatus.pending  # nothing judged
    # wharf admin requeue checks it again, with a count of its own
    done = requeue(catalog, celery, settings)
    assert done.rechecked == [repo.format_id(lid)]
    with catalog.session() as s:
        again = repo.latest_job_for(s, lid, JobKind.check)
        assert again.id != job_id and repo.LOST_MESSAGES not in again.request


def test_a_retry_counting_down_in_a_worker_is_not_taken_for_lost(catalog, settings):
    celery = make_celery(settings)
    job_id, _ = _learnware_with_check(catalog)
    with catalog.session() as s:
        repo.start_job(s, job_id, liveness.this_worker())
        due = utcnow() + timedelta(seconds=60)  # a retry's countdown: the worker holds it
        assert repo.requeue_job(s, job_id, holder=liveness.this_worker(), lost=False, due=due)
        repo.get_job(s, job_id).created_at = utcnow() - timedelta(seconds=300)
    assert reconcile.resend_lost(catalog, celery, settings, held=set()) == []
    with catalog.session() as s:
        repo.get_job(s, job_id).heartbeat_at = utcnow() - timedelta(seconds=31)  # 31 s overdue
    assert reconcile.resend_lost(catalog, celery, settings, held=set()) == [job_id]


def test_the_broker_is_read_for_the_jobs_it_holds(settings):
    """Task ids, and the job a bulk task works on (its first argument)."""
    from wharf.workers.app import BULK_SUBMIT_TASK, INDEX_QUEUE, SEARCH_QUEUE, SEARCH_TASK

    celery = make_celery(settings)
    celery.send_task(SEARCH_TASK, args=["s" * 32], queue=SEARCH_QUEUE, task_id="s" * 32)
    celery.send_task(BULK_SUBMIT_TASK, args=["b" * 32, 0], queue=INDEX_QUEUE)
    held = reconcile.broker_jobs(celery, settings)
    assert {"s" * 32, "b" * 32} <= held
    assert reconcile.broker_jobs(celery, Settings(broker_url="amqp://x")) is None  # can't tell


def test_the_redis_broker_is_read_waiting_and_unacknowledged(redis_database):
    """What kombu's Redis transport holds: the queues, and the messages a worker was given and
    has not acknowledged; a Redis emptied (restarted without persistence) holds none."""
    import redis
    from wharf.workers.app import CHECK_QUEUE, CHECK_TASK

    with redis_database() as url:
        settings = Settings(broker_url=url)
        celery = make_celery(settings)
        for job in ("1" * 32, "2" * 32):
            celery.send_task(CHECK_TASK, args=[job, 1], queue=CHECK_QUEUE, task_id=job)
        with celery.connection_for_read() as connection:  # a worker takes one
            with connection.SimpleQueue(CHECK_QUEUE, no_ack=False) as queue:
                taken = queue.get(timeout=5)
                assert reconcile.broker_jobs(celery, settings) == {"1" * 32, "2" * 32}
                redis.Redis.from_url(url).flushdb()
                assert reconcile.broker_jobs(celery, settings) == set()
                taken.requeue()


# -- wharf admin requeue --------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_requeue_sends_every_unfinished_job_that_no_live_worker_holds(catalog, settings):
    celery = make_celery(settings)
    with catalog.session() as s:
        queued_lost = repo.create_job(s, JobKind.search, request={}).id
        queued_kept = repo.create_job(s, JobKind.search, request={}).id
        dead = repo.create_job(s, JobKind.search, request={}).id
        alive = repo.create_job(s, JobKind.search, request={}).id
        repo.start_job(s, dead, f"{liveness.HOST}:{_dead_pid()}")
        repo.start_job(s, alive, liveness.this_worker())
    liveness.send(celery, JobKind.search, queued_kept, None)
    done = requeue(catalog, celery, settings)
    assert (done.resent, done.in_broker) == ([queued_lost], [queued_kept])
    assert (done.taken_over, done.running) == ([dead], [alive])
    assert done.sent == 2 and len(done.lines()) == 4
    with catalog.session() as s:
        assert repo.get_job(s, dead).worker_losses == 1  # its worker died
    assert reconcile.broker_jobs(celery, settings) == {queued_lost, queued_kept, dead}


# -- cancelling ----------------------------------------------------------------------------------


def test_a_queued_check_is_cancelled_by_its_owner_and_its_learnware_can_be_sent_again(api):
    sub = submit(api).json()
    r = api.delete(f"/v1/jobs/{sub['job_id']}", headers=auth(api, "bob"))
    assert r.status_code == 404  # another user's job is private
    r = api.delete(f"/v1/jobs/{sub['job_id']}", headers=auth(api, "alice"))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled" and r.json()["error"] == "cancelled by alice"
    lw = api.get(f"/v1/learnwares/{sub['learnware_id']}", headers=auth(api, "alice")).json()
    assert lw["status"] == "rejected"
    log = api.get(f"/v1/learnwares/{sub['learnware_id']}/log", headers=auth(api, "alice")).text
    assert "cancelled by alice" in log and "nothing in the package was judged" in log
    r = api.delete(f"/v1/jobs/{sub['job_id']}", headers=auth(api, "alice"))
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]

    again = submit(api)  # the same package: checked again under its id
    assert again.status_code == 202 and again.json()["resubmitted"]
    assert again.json()["learnware_id"] == sub["learnware_id"]
    r = api.delete(f"/v1/jobs/{again.json()['job_id']}", headers=auth(api, "admin"))
    assert r.json()["error"] == "cancelled by admin (an admin)"
    assert api.delete(f"/v1/learnwares/{sub['learnware_id']}", headers=auth(api, "alice"))


def test_a_cancelled_search_leaves_no_spec_in_the_store(api):
    store = api.app.state.services.store
    store.put("searches/x.json", io.BytesIO(b"{}"))
    with api.catalog.session() as s:
        alice = repo.get_user_by_name(s, "alice")
        job_id = repo.create_job(
            s, JobKind.search, owner_id=alice.id, request={"spec_key": "searches/x.json"}
        ).id
    r = api.delete(f"/v1/jobs/{job_id}", headers=auth(api, "alice"))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert not store.exists("searches/x.json")
    anonymous = api.post(
        "/v1/searches", data={"semantic_spec": '{"Name": {"Type": "String", "Values": "x"}}'}
    ).json()["job_id"]
    r = api.delete(f"/v1/jobs/{anonymous}", headers=auth(api, "alice"))
    assert r.status_code == 403 and "only admins" in r.json()["detail"]
    assert api.delete(f"/v1/jobs/{anonymous}").status_code == 401
    assert api.delete(f"/v1/jobs/{anonymous}", headers=auth(api, "admin")).status_code == 200


def test_a_cancelled_job_stops_the_work_running_in_the_main_thread(catalog, settings):
    """The heartbeat finds the job cancelled and interrupts the blocking wait of the process
    that runs it (here a child process it waits for, as the sandbox's supervisor does)."""
    fast = Settings(data_dir=settings.data_dir, job_heartbeat_s=0.2)
    job_id, _ = _learnware_with_check(catalog)
    liveness.begin(catalog, job_id, fast)
    started = time.monotonic()
    with pytest.raises(liveness.JobCancelled):
        with liveness.heartbeat(catalog, job_id, fast):
            with catalog.session() as s:
                repo.cancel_job(s, job_id, "cancelled by o")
            child = subprocess.Popen(["sleep", "30"])
            try:
                child.wait()
            finally:
                child.kill()
                child.wait()
    assert time.monotonic() - started < 5
    # the next job of this process runs undisturbed
    other, _ = _learnware_with_check(catalog, "b")
    liveness.begin(catalog, other, fast)
    with liveness.heartbeat(catalog, other, fast):
        time.sleep(0.6)


# -- an enqueue that fails -----------------------------------------------------------------------


def test_a_submission_refused_for_a_broker_outage_is_resumed_by_sending_it_again(api, closed_port):
    """The broker is down: 503, the learnware kept pending with its job failed; the same
    package sent again resumes that learnware (no 409), and so does an edit."""
    services = api.app.state.services
    working = services.celery
    down = Settings(
        data_dir=services.settings.data_dir, broker_url=f"redis://127.0.0.1:{closed_port}/0"
    )
    services.celery = make_celery(down)
    r = submit(api)
    assert r.status_code == 503 and "nothing was lost" in r.json()["detail"]
    other = zip_bytes({"learnware.yaml": b"model: {}\n", "other.py": b"x = 1\n"})
    assert submit(api, package=other).status_code == 503
    services.celery = working

    again = submit(api)
    assert again.status_code == 202, again.text
    assert again.json()["resubmitted"] and again.json()["status"] == "pending"
    assert submit(api).status_code == 409  # its check is queued now: a duplicate again
    mine = api.get("/v1/learnwares?mine=true", headers=auth(api, "alice")).json()["items"]
    assert len(mine) == 2 and all(lw["status"] == "pending" for lw in mine)
    stuck = next(lw["id"] for lw in mine if lw["id"] != again.json()["learnware_id"])
    r = api.patch(  # an edit that changes nothing the check looks at still checks it
        f"/v1/learnwares/{stuck}",
        headers=auth(api, "alice"),
        data={"semantic_spec": json.dumps(SEMANTIC)},
    )
    assert r.status_code == 200 and r.json()["job_id"], r.text
    with api.catalog.session() as s:
        for lw in mine:
            job = repo.latest_job_for(s, repo.parse_id(lw["id"]), JobKind.check)
            assert job.state == JobState.queued


# -- scratch folders and partial uploads ---------------------------------------------------------


def test_a_dead_processs_scratch_folder_is_swept_and_a_live_ones_kept(tmp_path):
    settings = Settings(data_dir=tmp_path, scratch_dir=tmp_path / "scratch")
    code = (
        "import sys, tempfile; from wharf.market.settings import Settings; "
        "from wharf.workers import scratch; "
        f"here = scratch.enter(Settings(scratch_dir={str(tmp_path / 'scratch')!r})); "
        "d = tempfile.mkdtemp(prefix='wharf-check-'); "
        "open(d + '/package.zip', 'wb').write(b'x' * 5000); "
        "print(here, flush=True); sys.stdin.read()"
    )
    pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    dying = subprocess.Popen([sys.executable, "-c", code], **pipes)
    living = subprocess.Popen([sys.executable, "-c", code], **pipes)
    dead_dir = Path(dying.stdout.readline().decode().strip())
    live_dir = Path(living.stdout.readline().decode().strip())
    assert dead_dir.parent == live_dir.parent == scratch.root(settings)
    assert list(dead_dir.glob("wharf-check-*/package.zip"))  # tempfile writes there
    dying.kill()  # SIGKILL: nothing of its own cleans up
    dying.wait()
    swept = scratch.sweep(settings)
    assert (swept.folders, swept.bytes >= 5000) == (1, True)
    assert not dead_dir.exists() and live_dir.exists()
    living.stdin.close()
    living.wait()


def test_partial_uploads_of_dead_writers_are_swept(tmp_path):
    store = LocalStore(tmp_path / "objects")
    store.put("packages/a.zip", __import__("io").BytesIO(b"abc"))
    folder = tmp_path / "objects" / "packages"
    dead = folder / f".{_dead_pid()}-{_host_tag()}-x1.part"
    live = folder / f".{os.getpid()}-{_host_tag()}-x2.part"
    old = folder / ".legacy.part"
    young = folder / ".legacy2.part"
    for path in (dead, live, old, young):
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert store.sweep_partial(max_age_s=3600) == 2
    assert sorted(p.name for p in folder.iterdir()) == sorted(["a.zip", live.name, young.name])
    assert store.list("packages/") == ["packages/a.zip"]


def _host_tag() -> str:
    from wharf.market.store import local

    return local._HOST_TAG


def test_unfinished_multipart_uploads_are_aborted_on_s3(s3_store):
    """An upload its writer never completed is aborted once older than the bound (moto dates
    every upload in 2010, so here it is always old enough); stored objects stay."""
    s3_store.put("packages/whole.zip", io.BytesIO(b"abc"))
    client = s3_store._client
    client.create_multipart_upload(Bucket=s3_store.bucket, Key="packages/big.zip")
    assert client.list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads")
    assert s3_store.sweep_partial(max_age_s=3600) == 1
    assert not client.list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads")
    assert s3_store.list("packages/") == ["packages/whole.zip"]


def test_tempfile_is_not_left_pointing_at_a_scratch_folder():
    assert "wharf-scratch" not in tempfile.gettempdir()  # enter() runs in pool processes only


@pytest.mark.services  # a market's processes
def test_wharf_cancel_from_the_command_line(tmp_path, monkeypatch, capsys):
    from wharf.cli.main import main
    from wharf.cli.serve import LocalMarket

    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    package, semantic = tmp_path / "m.zip", tmp_path / "m.json"
    package.write_bytes(zip_bytes({"learnware.yaml": b"model: {}\n", "__init__.py": b""}))
    semantic.write_text(json.dumps(SEMANTIC))
    with LocalMarket(tmp_path / "m", workers=0) as m:  # no worker: the check stays queued
        monkeypatch.setenv("WHARF_URL", m.url)
        monkeypatch.setenv("WHARF_TOKEN", m.token)
        assert main(["submit", str(package), "--semantic", str(semantic)]) == 0
        out = capsys.readouterr().out.split()
        lid, job_id = out[1].rstrip(":"), out[-1].rstrip(")")
        assert main(["cancel", job_id]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"check job {job_id}: cancelled",
            f"learnware {lid}: rejected, nothing judged; to have it checked, `wharf update "
            f"{lid} --package ZIP` or submit the same package again; or `wharf delete {lid}`",
        ]
        assert main(["jobs", job_id]) == 1
        assert capsys.readouterr().out.startswith(f"learnware {lid}: the check was cancelled by")
        assert main(["cancel", job_id]) == 1
        assert "has already cancelled" in capsys.readouterr().err
        assert main(["submit", str(package), "--semantic", str(semantic)]) == 0  # resubmitted
        assert f"learnware {lid}: pending" in capsys.readouterr().out

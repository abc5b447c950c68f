"""The API on its own (FastAPI TestClient, real SQLite catalog and local store; the broker is
the embedded one, so queued tasks just wait): validation, auth, limits and error shapes."""

import io
import json
import subprocess
import sys
import threading
import time
import zipfile

import pytest
from fastapi.testclient import TestClient
from wharf.market.catalog import Catalog, Role, repo
from wharf.market.settings import Settings

SEMANTIC = {
    "Data": {"Type": "Class", "Values": ["Table"]},
    "Task": {"Type": "Class", "Values": ["Regression"]},
    "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
    "Scenario": {"Type": "Tag", "Values": ["Business"]},
    "License": {"Type": "Class", "Values": ["MIT"]},
    "Name": {"Type": "String", "Values": "sales model"},
    "Description": {"Type": "String", "Values": "predicts weekly sales"},
    "Input": {"Dimension": 3, "Description": {"0": "price"}},
    "Output": {"Dimension": 1, "Description": {}},
}


def zip_bytes(files: dict[str, bytes]) -> bytes:
    """The same bytes for the same files: a fixed timestamp (zipfile would stamp the current
    time, and two packages made across a 2-second boundary would differ)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


@pytest.fixture
def api(tmp_path):
    return make_api(tmp_path)


def make_api(tmp_path):
    """A TestClient of the API on a fresh market with users admin, alice and bob, whose
    tokens are in ``.tokens``; its catalog is ``.catalog``."""
    from wharf.api.app import create_app

    settings = Settings(data_dir=tmp_path, max_upload_bytes=200_000, public_read=True)
    catalog = Catalog.create(settings.catalog_url)
    with catalog.session() as s:
        admin = repo.create_user(s, "admin", Role.admin)
        alice = repo.create_user(s, "alice", Role.user)
        bob = repo.create_user(s, "bob", Role.user)
        tokens = {
            name: repo.create_token(s, user.id, "test")[0]
            for name, user in (("admin", admin), ("alice", alice), ("bob", bob))
        }
    client = TestClient(create_app(settings))
    client.tokens = tokens
    client.catalog = catalog
    return client


def auth(api, who):
    return {"Authorization": f"Bearer {api.tokens[who]}"}


def submit(api, who="alice", package=None, semantic=None):
    package = package or zip_bytes({"learnware.yaml": b"model: {}\n", "__init__.py": b""})
    return api.post(
        "/v1/learnwares",
        headers=auth(api, who) if who else {},
        files={"package": ("m.zip", package, "application/zip")},
        data={"semantic_spec": json.dumps(semantic or SEMANTIC)},
    )


def test_submission_is_accepted_for_checking(api):
    r = submit(api)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "pending" and len(body["learnware_id"]) == 8
    job = api.get(f"/v1/jobs/{body['job_id']}", headers=auth(api, "alice")).json()
    assert job["kind"] == "check" and job["state"] == "queued"
    lw = api.get(f"/v1/learnwares/{body['learnware_id']}", headers=auth(api, "alice")).json()
    assert lw["status"] == "pending" and lw["owner"] == "alice"


def test_problem_json_shape_and_auth(api):
    r = submit(api, who=None)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert set(r.json()) >= {"type", "title", "status", "detail"}
    r = api.post("/v1/learnwares", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and "unknown" in r.json()["detail"]


def test_semantic_errors_are_422_naming_the_field(api):
    bad = json.loads(json.dumps(SEMANTIC))
    bad["Task"]["Values"] = ["Cooking"]
    r = submit(api, semantic=bad)
    assert r.status_code == 422
    assert r.json()["field"].startswith("semantic_spec.Task")
    r = api.post(
        "/v1/learnwares",
        headers=auth(api, "alice"),
        files={"package": ("m.zip", b"PK..", "application/zip")},
        data={"semantic_spec": "{not json"},
    )
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


def accept(api, lid: str) -> None:
    """What a check worker does when it accepts a learnware."""
    with api.catalog.session() as s:
        pk = repo.parse_id(lid)
        assert repo.claim_for_check(s, pk)
        meta = {
            "type": "RKMETableSpecification",
            "shape": [3],
            "gamma": 0.1,
            "points": 1,
            "num_points": 5,
        }
        spec = '{"z":[[0,0,0]],"beta":[1],"gamma":0.1,"num_points":5}'
        assert repo.finish_check(
            s, pk, accepted=True, log="ok", spec_meta=meta, stat_spec_json=spec
        )


def test_duplicate_content_is_409_naming_the_existing_learnware_to_those_who_may_see_it(api):
    first = submit(api).json()["learnware_id"]
    for who in ("alice", "admin"):  # the owner and admins are told which learnware it is
        r = submit(api, who=who)
        assert r.status_code == 409
        assert r.json()["existing_learnware"] == first and first in r.json()["detail"]
    r = submit(api, who="bob")  # another user: the pending learnware stays private
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert "existing_learnware" not in r.json() and first not in r.text
    assert "another user and is not public" in r.json()["detail"]
    accept(api, first)
    r = submit(api, who="bob")  # accepted: public, so it is named
    assert r.status_code == 409 and r.json()["existing_learnware"] == first


def test_oversized_upload_is_413(api):
    big = zip_bytes({"learnware.yaml": b"x" * 10, "blob.bin": bytes(400_000)})
    r = submit(api, package=big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    with api.catalog.session() as s:
        assert repo.list_learnwares(s)[1] == 0  # nothing was stored


def test_an_unexpected_error_is_a_500_problem(api, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(repo, "list_learnwares", broken)
    client = TestClient(api.app, raise_server_exceptions=False)
    r = client.get("/v1/learnwares")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert r.json() == {
        "type": "about:blank",
        "title": "Internal server error",
        "status": 500,
        "detail": "the market failed to answer this request; it was logged, try again later",
    }
    assert "a bug" not in r.text


def test_ownership_on_writes_and_privacy_before_acceptance(api):
    lid = submit(api).json()["learnware_id"]
    assert api.get(f"/v1/learnwares/{lid}").status_code == 404  # pending: private
    assert api.get(f"/v1/learnwares/{lid}", headers=auth(api, "bob")).status_code == 404
    assert api.delete(f"/v1/learnwares/{lid}", headers=auth(api, "bob")).status_code in (403, 404)
    assert api.get(f"/v1/learnwares/{lid}/log", headers=auth(api, "alice")).status_code == 200
    r = api.patch(
        f"/v1/learnwares/{lid}",
        headers=auth(api, "alice"),
        data={
            "semantic_spec": json.dumps(
                {**SEMANTIC, "Name": {"Type": "String", "Values": "renamed"}}
            )
        },
    )
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert api.get(f"/v1/learnwares/{lid}", headers=auth(api, "alice")).json()["name"] == "renamed"
    assert api.delete(f"/v1/learnwares/{lid}", headers=auth(api, "admin")).status_code == 204
    assert api.get(f"/v1/learnwares/{lid}", headers=auth(api, "alice")).status_code == 404


def test_listing_shows_only_what_the_caller_may_see(api):
    submit(api)
    assert api.get("/v1/learnwares").json()["total"] == 0  # anonymous: accepted only
    assert api.get("/v1/learnwares", headers=auth(api, "alice")).json()["total"] == 1
    assert api.get("/v1/learnwares", headers=auth(api, "bob")).json()["total"] == 0
    assert api.get("/v1/learnwares", headers=auth(api, "admin")).json()["total"] == 1
    assert api.get("/v1/learnwares?limit=0").status_code == 422


def test_unknown_ids(api):
    assert api.get("/v1/learnwares/99999999").status_code == 404
    assert api.get("/v1/learnwares/../etc").status_code == 404
    assert api.get("/v1/learnwares/abc").status_code == 404
    assert api.get("/v1/jobs/0123").status_code == 404


def test_search_request_validation(api):
    r = api.post(
        "/v1/searches",
        files={"stat_spec": ("u.json", b'{"z": [[1,2]], "beta": [1,2], "gamma": 0.1}')},
    )
    assert r.status_code == 422 and "beta has 2 weights" in r.json()["detail"]
    r = api.post(
        "/v1/searches",
        data={"semantic_spec": json.dumps({"Task": {"Type": "Class", "Values": ["Nope"]}})},
    )
    assert r.status_code == 422 and r.json()["field"].startswith("semantic_spec.Task")
    spec = {"z": [[0.0, 1.0, 2.0]], "beta": [1.0], "gamma": 0.1, "num_points": 5}
    r = api.post("/v1/searches", files={"stat_spec": ("u.json", json.dumps(spec).encode())})
    assert r.status_code == 202 and "status_url" in r.json()


def test_a_small_spec_travels_in_its_search_job_and_a_large_one_in_the_store(
    api, tmp_path, monkeypatch
):
    from wharf.api.routes import searches
    from wharf.market.store import make_store

    store = make_store(Settings(data_dir=tmp_path))
    spec = json.dumps({"z": [[0.0, 1.0, 2.0]], "beta": [1.0], "gamma": 0.1, "num_points": 5})

    def queue() -> dict:
        r = api.post("/v1/searches", files={"stat_spec": ("u.json", spec.encode())})
        assert r.status_code == 202, r.text
        with api.catalog.session() as s:
            return repo.get_job(s, r.json()["job_id"]).request

    request = queue()
    assert request["spec"] == spec and "spec_key" not in request
    assert not list(store.list("searches/"))
    monkeypatch.setattr(searches, "INLINE_SPEC_BYTES", len(spec) - 1)
    request = queue()
    assert "spec" not in request and store.open(request["spec_key"]).read() == spec.encode()


def test_a_job_read_can_wait_for_its_end(api):
    """?wait=S answers when the job ends, or after S seconds with it as it is (200 either
    way); the embedded market has no Redis, so the API reads the job at growing pauses."""
    r = api.post("/v1/searches", headers=auth(api, "alice"), data={"semantic_spec": "{}"})
    job_id = r.json()["job_id"]
    t0 = time.monotonic()
    r = api.get(f"/v1/jobs/{job_id}", params={"wait": 0.3}, headers=auth(api, "alice"))
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert time.monotonic() - t0 >= 0.3

    def end_soon():
        time.sleep(0.3)
        with api.catalog.session() as s:
            repo.finish_job(s, job_id, {"singles": [], "mixture": None})

    threading.Thread(target=end_soon).start()
    t0 = time.monotonic()
    r = api.get(f"/v1/jobs/{job_id}", params={"wait": 20}, headers=auth(api, "alice"))
    assert r.status_code == 200 and r.json()["state"] == "succeeded"
    assert r.json()["result"]["singles"] == []
    assert time.monotonic() - t0 < 10  # answered at the end, not at the wait's
    # other users' jobs stay private, waiting or not; a wait must be a number of seconds
    r = api.get(f"/v1/jobs/{job_id}", params={"wait": 5}, headers=auth(api, "bob"))
    assert r.status_code == 404
    for bad in ("-1", "nan", "inf", "soon"):
        r = api.get(f"/v1/jobs/{job_id}", params={"wait": bad}, headers=auth(api, "alice"))
        assert r.status_code == 422 and r.json()["detail"].startswith("query.wait: "), bad


def test_a_wait_is_cut_to_the_markets_longest(tmp_path):
    from wharf.api.app import create_app

    settings = Settings(data_dir=tmp_path, job_wait_max_s=0.2)
    client = TestClient(create_app(settings))
    job_id = client.post("/v1/searches", data={"semantic_spec": "{}"}).json()["job_id"]
    t0 = time.monotonic()
    r = client.get(f"/v1/jobs/{job_id}", params={"wait": 600})
    assert r.status_code == 200 and r.json()["state"] == "queued"
    assert time.monotonic() - t0 < 5


def test_a_search_can_wait_for_its_result(api):
    """POST /v1/searches?wait=S: 202 with the job still queued when the wait is up (no worker
    runs here), and a long-poll read counts as one request against the read budget."""
    r = api.post(
        "/v1/searches",
        params={"wait": 0.2},
        headers=auth(api, "alice"),
        data={"semantic_spec": "{}"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job"]["id"] == body["job_id"] and body["job"]["state"] == "queued"
    assert api.post("/v1/searches", headers=auth(api, "alice"), data={}).json()["job"] is None
    before = api.get("/v1/learnwares", headers=auth(api, "alice"))
    waited = api.get(f"/v1/jobs/{body['job_id']}?wait=0.5", headers=auth(api, "alice"))
    after = api.get("/v1/learnwares", headers=auth(api, "alice"))
    remaining = [int(x.headers["RateLimit-Remaining"]) for x in (before, waited, after)]
    assert remaining == [remaining[0], remaining[0] - 1, remaining[0] - 2]


def test_tokens_create_list_revoke(api):
    r = api.post("/v1/tokens", headers=auth(api, "alice"), json={"name": "laptop"})
    assert r.status_code == 201 and r.json()["token"].startswith("wharf_")
    new = r.json()
    headers = {"Authorization": f"Bearer {new['token']}"}
    assert api.get("/v1/tokens", headers=headers).status_code == 200
    assert api.delete(f"/v1/tokens/{new['id']}", headers=auth(api, "bob")).status_code == 404
    assert api.delete(f"/v1/tokens/{new['id']}", headers=auth(api, "alice")).status_code == 204
    assert api.get("/v1/tokens", headers=headers).status_code == 401
    r = api.post("/v1/tokens", headers=auth(api, "alice"), json={"name": "x", "user": "carol"})
    assert r.status_code == 403
    r = api.post("/v1/tokens", headers=auth(api, "admin"), json={"name": "x", "user": "carol"})
    assert r.status_code == 201 and r.json()["user"] == "carol"


def test_a_new_users_email_is_set_with_their_first_token(api):
    admin = auth(api, "admin")
    body = {"name": "x", "user": "dave", "email": "Dave@Example.org"}
    assert api.post("/v1/tokens", headers=admin, json=body).status_code == 201
    with api.catalog.session() as s:
        assert repo.get_user_by_email(s, "dave@example.org").name == "dave"
        assert repo.get_user_by_name(s, "alice").email == "alice@localhost"
    taken = {"name": "x", "user": "erin", "email": "dave@example.org"}
    assert api.post("/v1/tokens", headers=admin, json=taken).status_code == 409
    bad = {"name": "x", "user": "erin", "email": "erin"}
    assert api.post("/v1/tokens", headers=admin, json=bad).status_code == 422
    again = {"name": "x", "user": "dave", "email": "other@example.org"}
    assert api.post("/v1/tokens", headers=admin, json=again).status_code == 422
    mine = {"name": "x", "email": "a@example.org"}
    assert api.post("/v1/tokens", headers=auth(api, "alice"), json=mine).status_code == 422


def test_tokens_live_the_market_lifetime_at_most(api, tmp_path):
    from datetime import UTC, datetime, timedelta

    from wharf.api.app import create_app

    def expires_in(body):
        expires = datetime.fromisoformat(body["expires_at"])
        return (expires - datetime.now(UTC)) / timedelta(days=1)

    r = api.post("/v1/tokens", headers=auth(api, "alice"), json={"name": "default"})
    assert r.status_code == 201 and 89.9 < expires_in(r.json()) <= 90  # WHARF_TOKEN_MAX_DAYS
    r = api.post("/v1/tokens", headers=auth(api, "alice"), json={"name": "w", "expires_in_days": 7})
    assert r.status_code == 201 and 6.9 < expires_in(r.json()) <= 7
    r = api.post("/v1/tokens", headers=auth(api, "bob"), json={"name": "y", "expires_in_days": 91})
    assert r.status_code == 422 and r.json()["field"] == "expires_in_days"
    assert "at most 90 days" in r.json()["detail"]
    unlimited = TestClient(create_app(Settings(data_dir=tmp_path, token_max_days=0)))
    r = unlimited.post("/v1/tokens", headers=auth(api, "alice"), json={"name": "forever"})
    assert r.status_code == 201 and r.json()["expires_at"] is None


def test_expired_and_revoked_tokens_say_so(api):
    from datetime import UTC, datetime, timedelta

    with api.catalog.session() as s:
        alice = repo.get_user_by_name(s, "alice")
        past = datetime.now(UTC) - timedelta(minutes=1)
        expired, _ = repo.create_token(s, alice.id, "old", expires_at=past)
        revoked, row = repo.create_token(s, alice.id, "gone")
        repo.revoke_token(s, row.id)
    r = api.get("/v1/tokens", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert f"the token expired at {past.isoformat(timespec='seconds')}" in r.json()["detail"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert "expired" in r.headers["WWW-Authenticate"]
    r = api.get("/v1/learnwares", headers={"Authorization": f"Bearer {revoked}"})
    assert r.status_code == 401 and r.json()["detail"] == "the token was revoked"


def test_health_vocabulary_and_openapi(api):
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert "Classification" in api.get("/v1/vocabulary").json()["Task"]
    paths = api.get("/openapi.json").json()["paths"]
    assert {"/v1/learnwares", "/v1/jobs/{job_id}", "/v1/searches"} <= set(paths)


@pytest.mark.services
def test_api_process_never_imports_torch():
    code = "import sys, api.app; api.app.create_app(); assert 'torch' not in sys.modules, 'torch'"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"WHARF_DATA_DIR": "/tmp/wharf-import-check", "PATH": "/usr/bin"},
    )
    assert res.returncode == 0, res.stderr


def test_a_private_market_needs_a_token_to_read(tmp_path):
    from wharf.api.app import create_app

    settings = Settings(data_dir=tmp_path, public_read=False)
    client = TestClient(create_app(settings))
    r = client.get("/v1/learnwares")
    assert r.status_code == 401 and "private" in r.json()["detail"]
    assert client.post("/v1/searches", data={"semantic_spec": "{}"}).status_code == 401
    assert client.get("/healthz").status_code == 200


def test_a_deployment_refuses_the_embedded_fallbacks(monkeypatch):
    monkeypatch.setenv("WHARF_REQUIRE_SERVICES", "true")
    monkeypatch.setenv("WHARF_DATABASE_URL", "postgresql+psycopg://wharf@db/wharf")
    with pytest.raises(ValueError, match="WHARF_BROKER_URL, WHARF_STORE=s3"):
        Settings()
    monkeypatch.setenv("WHARF_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("WHARF_STORE", "s3")
    assert Settings().require_services


def test_metrics_report_requests_catalog_and_queues(api):
    submit(api)
    api.get("/v1/learnwares")
    text = api.get("/metrics").text
    timed = 'method="POST",route="/v1/learnwares",status="202"'
    assert f"wharf_http_request_duration_seconds_count{{{timed}}} 1.0" in text
    assert 'wharf_learnwares{status="pending"} 1.0' in text
    assert 'wharf_jobs{kind="check",state="queued"} 1.0' in text
    assert 'wharf_queue_depth{queue="check"} 1.0' in text  # waiting in the embedded broker
    assert 'wharf_queue_depth{queue="search"} 0.0' in text


def test_edits_of_checked_fields_trigger_a_new_check(api):
    sub = submit(api).json()
    lid = sub["learnware_id"]
    accept(api, lid)
    renamed = {**SEMANTIC, "Name": {"Type": "String", "Values": "better name"}}
    r = api.patch(
        f"/v1/learnwares/{lid}",
        headers=auth(api, "alice"),
        data={"semantic_spec": json.dumps(renamed)},
    )
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["job_id"] == ""
    wider = {**renamed, "Input": {"Dimension": 4, "Description": {}}}
    r = api.patch(
        f"/v1/learnwares/{lid}",
        headers=auth(api, "alice"),
        data={"semantic_spec": json.dumps(wider)},
    )
    assert r.status_code == 200 and r.json()["status"] == "pending" and r.json()["job_id"]
    lw = api.get(f"/v1/learnwares/{lid}", headers=auth(api, "alice")).json()
    assert lw["spec"] is None and lw["semantic_spec"]["Input"]["Dimension"] == 4


def reject(api, lid: str, reason: str = "FAIL outputs must be numbers") -> None:
    """What a check worker does when it rejects a learnware."""
    with api.catalog.session() as s:
        pk = repo.parse_id(lid)
        assert repo.claim_for_check(s, pk)
        assert repo.finish_check(
            s,
            pk,
            accepted=False,
            log=f"{reason}\nFAIL REJECTED\n",
            spec_meta=None,
            stat_spec_json=None,
        )


def test_a_rejected_package_sent_again_by_its_owner_is_checked_again(api):
    first = submit(api).json()
    lid = first["learnware_id"]
    reject(api, lid)
    fixed = {**SEMANTIC, "Input": {"Dimension": 4, "Description": {}}}
    r = submit(api, semantic=fixed)  # the same bytes, a fixed semantic spec
    assert r.status_code == 202, r.text
    again = r.json()
    assert again["learnware_id"] == lid and again["resubmitted"] is True
    assert again["status"] == "pending" and again["job_id"] not in ("", first["job_id"])
    job = api.get(f"/v1/jobs/{again['job_id']}", headers=auth(api, "alice")).json()
    assert job["kind"] == "check" and job["learnware_id"] == lid and job["state"] == "queued"
    lw = api.get(f"/v1/learnwares/{lid}", headers=auth(api, "alice")).json()
    assert lw["status"] == "pending" and lw["semantic_spec"]["Input"]["Dimension"] == 4
    log = api.get(f"/v1/learnwares/{lid}/log", headers=auth(api, "alice")).text
    assert "no check has finished yet" in log  # the old verdict is gone
    # While it waits for the check, the same bytes are a 409 that says so.
    r = submit(api)
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"this package was already submitted as learnware {lid}; it is pending, waiting for "
        f"its check: GET /v1/learnwares/{lid} follows it"
    )
    # Another user's copy of a rejected package is still refused without naming it.
    reject(api, lid)
    r = submit(api, who="bob")
    assert r.status_code == 409 and lid not in r.text
    assert submit(api, who="admin").status_code == 409  # only the owner re-submits


def test_duplicate_answers_say_what_to_do(api):
    lid = submit(api).json()["learnware_id"]
    accept(api, lid)
    r = submit(api)
    assert r.json()["detail"] == (
        f"this package was already submitted as learnware {lid}; it is accepted: change its "
        f"specification with PATCH /v1/learnwares/{lid} (wharf update {lid})"
    )
    r = submit(api, who="bob")
    assert r.json()["detail"].endswith(
        "it is public: download or search it; the market holds each package once"
    )
    # Alice's other learnware, rejected, cannot take the first one's package: the answer
    # names both ways out.
    other = zip_bytes({"learnware.yaml": b"model: {}\n", "__init__.py": b"# 2\n"})
    second = submit(api, package=other).json()["learnware_id"]
    reject(api, second)
    r = api.patch(
        f"/v1/learnwares/{lid}",
        headers=auth(api, "alice"),
        files={"package": ("m.zip", other, "application/zip")},
    )
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"this package was already submitted as learnware {second}; it was rejected: send a "
        f"fixed package or semantic spec for it with PATCH /v1/learnwares/{second} (wharf "
        f"update {second}), or delete it (wharf delete {second}) and submit again"
    )


def test_any_edit_of_a_rejected_learnware_checks_it_again(api):
    package = zip_bytes({"learnware.yaml": b"model: {}\n", "__init__.py": b"# edit\n"})
    lid = submit(api, package=package).json()["learnware_id"]
    for data, files in (
        (
            {"semantic_spec": json.dumps({**SEMANTIC, "Name": {"Type": "String", "Values": "x"}})},
            None,
        ),
        ({}, {"package": ("m.zip", package, "application/zip")}),  # the same package again
        ({}, {"package": ("m.zip", package + b"\0", "application/zip")}),  # a new one
    ):
        reject(api, lid)
        r = api.patch(f"/v1/learnwares/{lid}", headers=auth(api, "alice"), data=data, files=files)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "pending" and r.json()["job_id"], data or files


def test_a_deleted_learnwares_package_can_be_submitted_again(api):
    lid = submit(api).json()["learnware_id"]
    reject(api, lid)
    assert api.delete(f"/v1/learnwares/{lid}", headers=auth(api, "alice")).status_code == 204
    r = submit(api)
    assert r.status_code == 202 and r.json()["learnware_id"] != lid
    assert r.json()["resubmitted"] is False
    accept(api, r.json()["learnware_id"])  # accepted ones too
    assert (
        api.delete(
            f"/v1/learnwares/{r.json()['learnware_id']}", headers=auth(api, "alice")
        ).status_code
        == 204
    )
    assert submit(api, who="bob").status_code == 202


def test_json_logs_carry_the_ids():
    import io
    import logging

    from wharf.market import logs

    logger = logging.getLogger("wharf.test-json-logs")
    stream = io.StringIO()
    logger.addHandler(logging.StreamHandler(stream))
    logger.propagate = False
    logs.configure(Settings(log_format="json"), logger)
    logger.info("queued check job %s", "abc", extra={"job_id": "abc", "learnware_id": "00000001"})
    record = json.loads(stream.getvalue())
    assert record["message"] == "queued check job abc" and record["level"] == "INFO"
    assert record["job_id"] == "abc" and record["learnware_id"] == "00000001"
    assert record["logger"] == "wharf.test-json-logs" and "time" in record


def test_an_api_that_shuts_down_leaves_no_open_files(tmp_path):
    """Its catalog's pooled connections close with it (on SQLite each is an open file)."""
    import gc
    import os

    from wharf.api.app import create_app

    def open_files() -> int:
        gc.collect()
        return len(os.listdir("/proc/self/fd"))

    settings = Settings(data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:  # what the first app sets up for good
        client.get("/healthz")
    before = open_files()
    for _ in range(5):
        with TestClient(create_app(settings)) as client:
            assert client.get("/healthz").status_code == 200
    assert open_files() <= before

"""A whole market end to end: the API and real Celery worker processes, over
(a) the embedded default (SQLite, local store, the filesystem broker) and
(b) Redis, PostgreSQL and an S3 endpoint over HTTP (moto's server)."""

from __future__ import annotations

import json
import uuid
import zipfile
from pathlib import Path

import pytest

from cli.serve import LocalMarket
from client import WharfClient, WharfError
from examples.learnwares import build_examples
from specification import RKME


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("services", marks=pytest.mark.postgres)]
)
def market(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"market-{request.param}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "20")
        if request.param == "services":
            import psycopg
            import redis
            from psycopg import sql

            admin = request.getfixturevalue("postgres_admin")
            endpoint = request.getfixturevalue("s3_endpoint")
            creds = request.getfixturevalue("s3_credentials")
            db = f"wharf_e2e_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            redis_db = 11
            redis.Redis(host="127.0.0.1", db=redis_db).flushdb()
            mp.setenv("WHARF_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}")
            mp.setenv("WHARF_BROKER_URL", f"redis://127.0.0.1:6379/{redis_db}")
            mp.setenv("WHARF_STORE", "s3")
            mp.setenv("WHARF_S3_ENDPOINT_URL", endpoint)
            mp.setenv("WHARF_S3_BUCKET", f"wharf-e2e-{uuid.uuid4().hex[:8]}")
            mp.setenv("WHARF_S3_CREATE_BUCKET", "true")
            mp.setenv("WHARF_S3_ACCESS_KEY_ID", creds["access_key_id"])
            mp.setenv("WHARF_S3_SECRET_ACCESS_KEY", creds["secret_access_key"])
        with LocalMarket(data_dir, workers=2) as m:
            m.kind = request.param
            yield m
        if request.param == "services":
            redis.Redis(host="127.0.0.1", db=redis_db).flushdb()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db))
                )


@pytest.fixture(scope="module")
def admin(market):
    with WharfClient(market.url, market.token) as c:
        yield c


@pytest.fixture(scope="module")
def users(admin, market):
    out = {}
    for name in ("alice", "bob"):
        token = admin.create_token("e2e", user=name)["token"]
        out[name] = WharfClient(market.url, token)
    yield out
    for c in out.values():
        c.close()


@pytest.fixture(scope="module")
def accepted(users, examples):
    """Every example learnware submitted by alice and checked."""
    alice = users["alice"]
    ids = {}
    subs = [(ex, alice.submit(ex.package, ex.semantic)) for ex in examples]
    for ex, sub in subs:
        alice.wait(sub["job_id"], timeout=180)
        lw = alice.learnware(sub["learnware_id"])
        assert lw["status"] == "accepted", alice.log(sub["learnware_id"])
        ids[ex.name] = sub["learnware_id"]
    return ids


def test_valid_packages_are_accepted_with_their_spec(accepted, users, examples):
    lw = users["bob"].learnware(accepted["digits 0-4"])  # public once accepted
    assert lw["status"] == "accepted"
    assert lw["spec"]["type"] == "RKMETableSpecification" and lw["spec"]["shape"] == [64]
    log = users["alice"].log(accepted["digits 0-4"])
    assert "accepted" in log.lower()


def test_download_equals_upload(accepted, users, examples, tmp_path):
    ex = examples[0]
    path = users["bob"].download(accepted[ex.name], tmp_path / "dl.zip")
    assert path.read_bytes() == ex.package.read_bytes()


def test_search_finds_the_learnware_of_the_users_data(accepted, users, examples):
    ex = next(e for e in examples if e.name == "digits 5-9")
    user_spec = RKME(n_points=50, seed=1, device="cpu").fit(ex.X_test)
    result = users["bob"].search(spec=user_spec, top=3)
    assert result["singles"][0]["id"] == accepted["digits 5-9"]
    assert result["singles"][0]["mmd2"] >= 0
    semantic_only = users["bob"].search(
        semantic={"Task": {"Type": "Class", "Values": ["Regression"]}}
    )
    ids = {m["id"] for m in semantic_only["singles"]}
    assert ids == {accepted["diabetes female"], accepted["diabetes male"]}


def test_mixture_for_a_user_spanning_two_learnwares(accepted, users, examples):
    import numpy as np

    a = next(e for e in examples if e.name == "diabetes female")
    b = next(e for e in examples if e.name == "diabetes male")
    spec = RKME(n_points=50, seed=2, device="cpu").fit(np.concatenate([a.X_test, b.X_test]))
    result = users["bob"].search(spec=spec)
    mix = result["mixture"]
    assert mix is not None
    assert set(mix["ids"]) == {accepted["diabetes female"], accepted["diabetes male"]}


def _bad_package(tmp_path: Path, ex, mutate) -> Path:
    files = {}
    with zipfile.ZipFile(ex.package) as zf:
        for info in zf.infolist():
            files[info.filename] = zf.read(info)
    files = mutate(files)
    out = tmp_path / f"bad-{uuid.uuid4().hex[:6]}.zip"
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return out


def _rejected(client, package, semantic) -> str:
    sub = client.submit(package, semantic)
    client.wait(sub["job_id"], timeout=180)
    lw = client.learnware(sub["learnware_id"])
    assert lw["status"] == "rejected"
    return client.log(sub["learnware_id"])


def test_bad_submissions_are_rejected_and_the_workers_survive(accepted, users, examples, tmp_path):
    alice = users["alice"]
    ex = examples[0]
    prefix = next(n for n in zipfile.ZipFile(ex.package).namelist() if n.endswith("__init__.py"))
    prefix = prefix[: -len("__init__.py")]

    def raising(files):
        patch = b"\n\ndef _boom(*a, **k):\n    raise RuntimeError('boom')\n\n"
        files[prefix + "__init__.py"] += patch + b"LinearModel.predict = _boom\n"
        return files

    log = _rejected(alice, _bad_package(tmp_path, ex, raising), ex.semantic)
    assert "boom" in log

    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(ex.package.read_bytes()[:-200])
    log = _rejected(alice, truncated, ex.semantic)
    assert "zip" in log.lower()

    wrong_dim = json.loads(json.dumps(ex.semantic))
    wrong_dim["Input"] = {"Dimension": 10, "Description": {}}
    extra = _bad_package(tmp_path, ex, lambda f: {**f, prefix + "extra.txt": b"x"})
    log = _rejected(alice, extra, wrong_dim)
    assert "dimension" in log.lower()

    # The workers are still there and nothing accepted was lost.
    for name, lid in accepted.items():
        assert alice.learnware(lid)["status"] == "accepted", name


def test_identical_content_is_a_conflict(accepted, users, examples):
    with pytest.raises(WharfError) as err:
        users["bob"].submit(examples[0].package, examples[0].semantic)
    assert err.value.status == 409
    assert err.value.problem["existing_learnware"] == accepted[examples[0].name]


def test_auth_and_ownership(accepted, users, market):
    lid = accepted["digits even"]
    with pytest.raises(WharfError) as err:
        users["bob"].delete(lid)
    assert err.value.status == 403
    with WharfClient(market.url) as anonymous, pytest.raises(WharfError) as err:
        anonymous.delete(lid)
    assert err.value.status == 401


def test_delete_removes_it_from_search(users, examples, tmp_path):
    alice = users["alice"]
    ex = examples[3]
    top = next(iter(zipfile.ZipFile(ex.package).namelist())).split("/")[0]
    package = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}/README.txt": b"another copy"})
    sub = alice.submit(package, ex.semantic)
    alice.wait(sub["job_id"], timeout=180)
    spec = RKME(n_points=30, seed=3, device="cpu").fit(ex.X_test)
    before = {m["id"] for m in alice.search(spec=spec, top=10)["singles"]}
    assert sub["learnware_id"] in before
    alice.delete(sub["learnware_id"])
    with pytest.raises(WharfError) as err:
        alice.learnware(sub["learnware_id"])
    assert err.value.status == 404
    after = {m["id"] for m in alice.search(spec=spec, top=10)["singles"]}
    assert sub["learnware_id"] not in after

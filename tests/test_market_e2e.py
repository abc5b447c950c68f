"""A whole market end to end: the API and real Celery worker processes, over
(a) the embedded default (SQLite, local store, the filesystem broker) and
(b) Redis, PostgreSQL and an S3 endpoint over HTTP (moto's server)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pytest
import yaml
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient, WharfError
from wharf.examples.learnwares import build_examples
from wharf.specification import RKME
from wharf.specification.files import dumps_spec

# Real markets: their API and worker processes (and, here, the services they run on).
pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(
    scope="module", params=["embedded", pytest.param("services", marks=pytest.mark.postgres)]
)
def market(request, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp(f"market-{request.param}")
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "20")
        mp.setenv("WHARF_LOG_FORMAT", "json")
        if request.param == "services":
            import psycopg
            from psycopg import sql

            admin = request.getfixturevalue("postgres_admin")
            endpoint = request.getfixturevalue("s3_endpoint")
            creds = request.getfixturevalue("s3_credentials")
            db = f"wharf_e2e_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
            broker = stack.enter_context(request.getfixturevalue("redis_database")())
            mp.setenv("WHARF_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}")
            mp.setenv("WHARF_BROKER_URL", broker)
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
            stack.close()
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


def test_a_search_answers_with_its_result_in_one_request(accepted, users, examples):
    """POST /v1/searches?wait=S: the API holds the request until a worker ends the search
    (announced over Redis in the services market; read from the catalog at growing pauses in
    the embedded one) and answers 200 with the job and its result. A read of an ended job
    with ?wait answers at once."""
    ex = next(e for e in examples if e.name == "digits 5-9")
    spec = dumps_spec(RKME(n_points=50, seed=1, device="cpu").fit(ex.X_test))
    http = users["bob"].http
    r = http.post(
        "/v1/searches",
        params={"wait": 30},
        data={"top": "3"},
        files={"stat_spec": ("u.json", spec, "application/json")},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["id"] == r.json()["job_id"] and job["state"] == "succeeded"
    assert job["result"]["singles"][0]["id"] == accepted["digits 5-9"]
    t0 = time.monotonic()
    again = http.get(f"/v1/jobs/{job['id']}", params={"wait": 30}, timeout=60)
    assert again.status_code == 200 and again.json()["result"] == job["result"]
    assert time.monotonic() - t0 < 10


def test_download_equals_upload(accepted, users, examples, tmp_path):
    """The uploaded bytes stay downloadable; the default download holds the same files in
    the layout the reference loads (tests/test_reference_client.py loads it there)."""
    import zipfile

    import yaml
    from wharf.specification.package import read_package

    ex = examples[0]
    lid = accepted[ex.name]
    original = users["bob"].http.get(
        f"/v1/learnwares/{lid}/package", params={"original": True}, follow_redirects=True
    )
    assert original.status_code == 200 and original.content == ex.package.read_bytes()
    path = users["bob"].download(lid, tmp_path / "dl.zip")
    served = zipfile.ZipFile(path)
    assert yaml.safe_load(served.read("learnware.yaml"))["id"] == lid
    uploaded = read_package(ex.package)
    for name in {f.name for f in uploaded.files} - {"learnware.yaml"}:
        assert served.read(name) == uploaded.read_member(name)


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


def _package_folder(package) -> str:
    """The folder of a package's learnware.yaml inside its zip ("" at the root), with its slash."""
    names = zipfile.ZipFile(package).namelist()
    return next(n for n in names if n.endswith("learnware.yaml"))[: -len("learnware.yaml")]


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
    try:
        client.wait(sub["job_id"], timeout=180)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {client.job(sub['job_id'])}") from None
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
    top = _package_folder(ex.package)
    package = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}README.txt": b"another copy"})
    sub = alice.submit(package, ex.semantic)
    alice.wait(sub["job_id"], timeout=180)
    spec = RKME(n_points=30, seed=3, device="cpu").fit(ex.X_test)
    job = alice.wait(alice.start_search(spec=spec, top=10), timeout=120)
    assert sub["learnware_id"] in {m["id"] for m in job["result"]["singles"]}
    alice.delete(sub["learnware_id"])
    with pytest.raises(WharfError) as err:
        alice.learnware(sub["learnware_id"])
    assert err.value.status == 404
    after = {m["id"] for m in alice.search(spec=spec, top=10)["singles"]}
    assert sub["learnware_id"] not in after
    # The result stored before the delete no longer shows it either.
    again = alice.job(job["id"])["result"]
    assert sub["learnware_id"] not in {m["id"] for m in again["singles"]}
    assert again["withdrawn"] == [sub["learnware_id"]]


def test_requirement_specs_the_market_cannot_compare_are_422(accepted, users, examples):
    bob = users["bob"]
    ex = next(e for e in examples if e.name == "digits 5-9")
    cases = {
        "features (the market has": RKME(n_points=10, seed=1).fit(ex.X_test[:, :7]),
        "gamma 0.5, but learnwares of 64 features use gamma 0.1": RKME(
            n_points=10, gamma=0.5, seed=1
        ).fit(ex.X_test),
    }
    for message, spec in cases.items():
        with pytest.raises(WharfError) as err:
            bob.start_search(spec=spec)
        assert err.value.status == 422 and message in str(err.value), str(err.value)
    spec = RKME(n_points=10, seed=1).fit(ex.X_test)
    semantic = {"Input": {"Dimension": 10, "Description": {}}}
    with pytest.raises(WharfError) as err:
        bob.start_search(spec=spec, semantic=semantic)
    assert err.value.status == 422 and "Input.Dimension is 10" in str(err.value)
    with pytest.raises(WharfError) as err:
        bob.start_search(spec=b'{"type": "RKMETableSpecification"')  # malformed JSON
    assert err.value.status == 422 and "stat_spec" in str(err.value)


def test_cli_against_a_running_market(
    accepted, users, examples, market, tmp_path, monkeypatch, capsys
):
    from wharf.cli.main import main

    token = users["alice"].http.headers["Authorization"].split()[1]
    monkeypatch.setenv("WHARF_URL", market.url)
    monkeypatch.setenv("WHARF_TOKEN", token)
    ex = examples[1]
    data = tmp_path / "user.csv"
    import numpy as np

    np.savetxt(data, ex.X_test, delimiter=",")
    assert main(["search", "--data", str(data), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert accepted[ex.name] in out.splitlines()[1]  # the first result row
    assert main(["search", "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["singles"][0]["id"] == accepted[ex.name]

    semantic = tmp_path / "semantic.json"
    semantic.write_text(json.dumps(ex.semantic))
    top = _package_folder(ex.package)
    package = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}NOTE.txt": b"cli"})
    assert main(["submit", str(package), "--semantic", str(semantic), "--wait"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.endswith("accepted")
    lid = line.split()[1].rstrip(":")

    out_zip = tmp_path / "dl.zip"
    assert main(["download", lid, "-o", str(out_zip), "--original"]) == 0
    assert out_zip.read_bytes() == package.read_bytes()
    assert main(["download", lid, "-o", str(out_zip)]) == 0  # the reference loader's layout
    served = zipfile.ZipFile(out_zip)
    assert str(yaml.safe_load(served.read("learnware.yaml"))["id"]) == lid
    assert served.read("NOTE.txt") == b"cli"
    assert main(["admin", "token", "create", "--name", "x", "--user", "mallory"]) == 1
    assert "only admins" in capsys.readouterr().err


#: What only commands that fit specs may import (each costs seconds to load).
HEAVY_MODULES = {"torch", "faiss", "sklearn", "sentence_transformers"}


def imported_modules(stderr: str) -> set[str]:
    """The top-level modules a ``python -X importtime`` run imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name.split(".")[0])
    return names


def test_cli_commands_that_fit_no_spec_start_without_torch(
    accepted, users, examples, market, tmp_path
):
    """``wharf --help`` and every command that only talks to a market (or only starts
    processes) import neither torch, faiss, scikit-learn nor sentence-transformers: they are
    run here as a user runs them, each in a fresh interpreter, against the running market."""
    env = {
        **os.environ,
        "WHARF_URL": market.url,
        "WHARF_TOKEN": users["alice"].http.headers["Authorization"].split()[1],
    }
    ex = next(e for e in examples if e.name == "digits 5-9")
    spec = tmp_path / "spec.json"
    spec.write_text(dumps_spec(RKME(n_points=20, seed=1, device="cpu").fit(ex.X_test)))
    semantic = tmp_path / "semantic.json"
    semantic.write_text(json.dumps(ex.semantic))
    job_id = users["alice"].start_search(spec=spec, top=1)
    lid = accepted["digits 5-9"]
    commands = [
        (["--help"], 0),
        (["search", "--rkme", str(spec), "--top", "3"], 0),
        (["search", "--semantic", str(semantic), "--json"], 0),
        (["jobs", job_id], 0),
        (["jobs", job_id, "--watch"], 0),
        (["download", lid, "-o", str(tmp_path / "dl.zip")], 0),
        (["submit", str(ex.package), "--semantic", str(semantic)], 1),  # 409: already there
        (["log", lid], 0),
        (["up", "--help"], 0),
        (["worker", "--help"], 0),
        (["admin", "migrate", "--help"], 0),
    ]
    for args, code in commands:
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "wharf.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == code, (args, done.stdout, done.stderr[-2000:])
        heavy = imported_modules(done.stderr) & HEAVY_MODULES
        assert not heavy, (args, heavy)
    searched = subprocess.run(
        [sys.executable, "-m", "wharf.cli.main", "search", "--rkme", str(spec), "--top", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert lid in searched.stdout.splitlines()[1]  # the first result row


def test_cli_a_rejected_learnware_is_fixed_and_sent_again(
    users, examples, market, tmp_path, monkeypatch, capsys
):
    """A user's way through a rejection with the CLI: the verdict and its reason, the same
    package sent again with a fixed semantic spec, an update, a delete that frees the bytes."""
    from wharf.cli.main import main

    monkeypatch.setenv("WHARF_URL", market.url)
    monkeypatch.setenv("WHARF_TOKEN", users["alice"].http.headers["Authorization"].split()[1])
    ex = next(e for e in examples if e.name == "digits even")
    top = _package_folder(ex.package)
    package = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}FIX.txt": b"1"})
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    right.write_text(json.dumps(ex.semantic))
    wrong.write_text(json.dumps({**ex.semantic, "Output": {"Dimension": 3, "Description": {}}}))
    reason = (
        "rejected: outputs are class scores of width 10 but the semantic Output.Dimension is 3; "
        "they must be equal"
    )

    assert main(["submit", str(package), "--semantic", str(wrong), "--wait"]) == 1
    out, err = capsys.readouterr()
    first = out.splitlines()[0].split()
    lid, job = first[1].rstrip(":"), first[-1].rstrip(")")
    assert f"learnware {lid}: rejected" in out.splitlines()
    assert reason in err.splitlines()
    assert main(["jobs", job]) == 1
    assert capsys.readouterr().out == (
        f"learnware {lid}: rejected\n  {reason}\n  the whole log: wharf log {lid}; fix it: "
        f"`wharf update {lid} --package ZIP --semantic JSON` (either or both) checks it again\n"
    )
    assert main(["jobs", job, "--json"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert raw["state"] == "succeeded" and raw["result"]["status"] == "rejected"
    assert main(["log", lid]) == 0
    assert "FAIL REJECTED" in capsys.readouterr().out

    # The same package again, with the semantic spec fixed: checked again under its id.
    assert main(["submit", str(package), "--semantic", str(right), "--wait"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[-1] == f"learnware {lid}: accepted"
    assert f"this package is your learnware {lid}, which awaited a check" in err
    again_job = out.splitlines()[0].split()[-1].rstrip(")")
    assert main(["jobs", again_job]) == 0
    assert capsys.readouterr().out == f"learnware {lid}: accepted\n"
    assert main(["jobs", job]) == 1  # the first check's verdict stands, with what came after
    assert capsys.readouterr().out == f"learnware {lid}: rejected by this check; accepted now\n"

    newer = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}FIX.txt": b"2"})
    assert main(["update", lid, "--package", str(newer), "--wait"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"learnware {lid}: accepted"
    assert main(["update", lid, "--semantic", str(right)]) == 0
    assert capsys.readouterr().out == f"learnware {lid}: updated; still accepted\n"

    assert main(["delete", lid]) == 0
    capsys.readouterr()
    assert main(["submit", str(newer), "--semantic", str(right)]) == 0  # its bytes are free
    out = capsys.readouterr().out.split()
    assert out[1].rstrip(":") != lid
    users["alice"].wait(out[-1].rstrip(")"), timeout=180)
    users["alice"].delete(out[1].rstrip(":"))


def test_interrupted_checks_are_queued_again_at_start(examples, tmp_path, monkeypatch):
    """A worker died mid-check and the embedded broker lost the message: the next start
    puts the check back in the queue."""
    from wharf.market.catalog import Catalog, JobState, repo
    from wharf.market.settings import Settings

    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)  # the embedded default, whatever the other tests set

    data_dir = tmp_path / "market"
    with LocalMarket(data_dir, workers=0) as m, WharfClient(m.url, m.token) as c:
        sub = c.submit(examples[0].package, examples[0].semantic)
    catalog = Catalog(Settings(data_dir=data_dir).catalog_url)
    with catalog.session() as s:  # what a worker killed during the check leaves behind
        lid = repo.parse_id(sub["learnware_id"])
        assert repo.claim_for_check(s, lid)
        assert repo.start_job(s, sub["job_id"]) is not None
    for message in (data_dir / "broker" / "queue").iterdir():
        message.unlink()
    with LocalMarket(data_dir, workers=1) as m, WharfClient(m.url, m.token) as c:
        assert m.requeued.taken_over == [sub["job_id"]]  # the same job, sent again
        deadline = time.monotonic() + 120
        while c.learnware(sub["learnware_id"])["status"] != "accepted":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        with catalog.session() as s:
            job = repo.get_job(s, sub["job_id"])
            assert job.state == JobState.succeeded and job.worker_losses == 0  # market stopped


def test_a_new_package_is_checked_again(users, examples, tmp_path):
    alice = users["alice"]
    ex = examples[4]
    top = _package_folder(ex.package)
    first = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}V.txt": b"1"})
    second = _bad_package(tmp_path, ex, lambda f: {**f, f"{top}V.txt": b"2"})
    sub = alice.submit(first, ex.semantic)
    alice.wait(sub["job_id"], timeout=180)
    edit = alice.update(sub["learnware_id"], package=second)
    assert edit["job_id"] and edit["status"] == "pending"
    alice.wait(edit["job_id"], timeout=180)
    lw = alice.learnware(sub["learnware_id"])
    assert lw["status"] == "accepted"
    assert lw["content_sha256"] == __import__("hashlib").sha256(second.read_bytes()).hexdigest()
    got = alice.download(sub["learnware_id"], tmp_path / "got.zip", original=True)
    assert got.read_bytes() == second.read_bytes()
    alice.delete(sub["learnware_id"])


def test_search_then_reuse_the_mixture(accepted, users, examples, tmp_path):
    """The whole paradigm: a user searches with an RKME, downloads what was found, and
    predicts with the learnwares (sandboxed) without training anything."""
    import numpy as np
    from wharf.reuse import Averaging, from_search

    a = next(e for e in examples if e.name == "diabetes female")
    b = next(e for e in examples if e.name == "diabetes male")
    X = np.concatenate([a.X_test, b.X_test])
    y = np.concatenate([a.y_test, b.y_test])
    result = users["bob"].search(spec=RKME(n_points=50, seed=4, device="cpu").fit(X))
    learnwares = from_search(users["bob"], result, tmp_path / "found")
    try:
        assert {lw.id for lw in learnwares} == {accepted[a.name], accepted[b.name]}
        pred = Averaging(learnwares, mode="mean").fit(X).predict(X)
        assert pred.shape[0] == len(X) and np.isfinite(pred).all()
        rmse = float(np.sqrt(np.mean((pred.reshape(-1) - y) ** 2)))
        assert rmse < np.std(y)  # better than predicting the mean
    finally:
        for lw in learnwares:
            lw.close()


def test_metrics_over_the_real_broker(accepted, market):
    import re

    import httpx

    text = httpx.get(f"{market.url}/metrics", timeout=10).text
    for queue in ("check", "search", "index"):
        assert re.search(rf'wharf_queue_depth\{{queue="{queue}"\}} \d', text), text
    checks = re.search(r'wharf_job_duration_seconds_count\{kind="check"\} (\d+)', text)
    assert checks and int(checks.group(1)) >= len(accepted)
    assert re.search(r'wharf_learnwares\{status="accepted"\} (\d+)', text)


def test_worker_logs_are_json_with_the_ids(accepted, market):
    records = []
    for path in (market.data_dir / "logs").glob("worker*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
    checked = [r for r in records if r.get("learnware_id") in set(accepted.values())]
    assert checked, records[-5:]
    assert all(r["job_id"] and r["status"] == "accepted" for r in checked)

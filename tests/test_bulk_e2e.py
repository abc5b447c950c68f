"""Bulk indexing end to end, through real markets (the API and Celery worker processes).

The source market gets the example learnwares from ``wharf bulk-index`` without
``--trusted``: one bulk submission (``POST /v1/bulk-submissions``) whose every package is
checked in the sandbox. ``wharf admin export`` writes them as a bundle, and a second market
imports it with ``wharf bulk-index --trusted``: a chord of index tasks (two learnwares a batch
here), over the embedded default (file broker and results) and over Redis (broker and native
chords), both with SQLite and a local store. Users' bulk submissions on default settings
(rate limits included) get every package checked, accepted or rejected with its reason, and a
market with small quotas refuses uploads past them with 413 and 429 while ``wharf bulk-index``
still gets every package checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile

import pytest
from wharf.cli.main import main
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient, WharfError
from wharf.examples.bundles import synthetic_learnware, write_bundle, write_packages
from wharf.examples.learnwares import build_examples
from wharf.specification import RKME

# Real markets: their API and worker processes (one on Redis).
pytestmark = pytest.mark.services


def _embedded_env(mp: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        mp.delenv(name)
    mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "20")


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """The example packages, each with its semantic spec beside it (``<name>.json``)."""
    made = build_examples(tmp_path_factory.mktemp("examples"))
    for ex in made:
        ex.package.with_suffix(".json").write_text(json.dumps(ex.semantic))
    return made


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        _embedded_env(mp)
        with LocalMarket(tmp_path_factory.mktemp("source"), workers=2) as market:
            yield market


@pytest.fixture(scope="module")
def submitted(source, examples):
    """``wharf bulk-index DIR`` (untrusted) of the examples into the source market."""
    folder = examples[0].package.parent
    argv = ["bulk-index", str(folder), "--url", source.url, "--token", source.token]
    argv += ["--timeout", "300"]
    with pytest.MonkeyPatch.context() as mp:
        out = io.StringIO()
        mp.setattr("sys.stdout", out)
        code = main(argv)
        again = io.StringIO()
        mp.setattr("sys.stdout", again)
        code_again = main(argv)
    return code, out.getvalue(), code_again, again.getvalue()


@pytest.fixture(scope="module")
def bundle(source, submitted, tmp_path_factory):
    """``wharf admin export`` of the source market (settings from the environment)."""
    from wharf.market.settings import get_settings

    out = tmp_path_factory.mktemp("export") / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        _embedded_env(mp)
        mp.setenv("WHARF_DATA_DIR", str(source.data_dir))
        get_settings.cache_clear()
        try:
            assert main(["admin", "export", str(out)]) == 0
        finally:
            get_settings.cache_clear()
    return out


@pytest.fixture(scope="module", params=["embedded", "redis"])
def target(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        _embedded_env(mp)
        mp.setenv("WHARF_BULK_BATCH_SIZE", "2")
        with contextlib.ExitStack() as stack:
            if request.param == "redis":  # a database of its own; fails, or skips, without Redis
                mp.setenv(
                    "WHARF_BROKER_URL",
                    stack.enter_context(request.getfixturevalue("redis_database")()),
                )
            with LocalMarket(tmp_path_factory.mktemp(f"target-{request.param}"), workers=2) as m:
                yield m


@pytest.fixture(scope="module")
def admin(target):
    with WharfClient(target.url, target.token) as client:
        yield client


def _run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().out


def test_untrusted_bulk_index_checks_every_package(submitted, examples):
    code, out, code_again, again = submitted
    assert code == 0, out
    assert out.startswith(f"accepted {len(examples)}, rejected 0, refused 0, failed 0"), out
    assert code_again == 0
    assert f"already in the market {len(examples)}" in again, again


def test_export_holds_every_accepted_learnware(bundle, examples):
    lines = [json.loads(line) for line in (bundle / "manifest.jsonl").read_text().splitlines()]
    assert sorted(r["semantic_spec"]["Name"]["Values"] for r in lines) == sorted(
        ex.semantic["Name"]["Values"] for ex in examples
    )
    assert all((bundle / r["package"]).is_file() for r in lines)


def test_trusted_import_then_search_finds_them(target, bundle, admin, examples, capsys):
    argv = ["bulk-index", str(bundle), "--trusted", "--url", target.url, "--token", target.token]
    argv += ["--timeout", "120"]
    code, out = _run(argv, capsys)
    assert code == 0, out
    assert f"imported {len(examples)} of {len(examples)}: 0 already" in out, out
    page = admin.learnwares(status="accepted")
    assert page["total"] == len(examples)
    by_name = {lw["name"]: lw["id"] for lw in page["items"]}
    log = admin.log(page["items"][0]["id"])
    assert "trusted bundle" in log and "admin" in log

    ex = next(e for e in examples if e.name == "digits 5-9")
    result = admin.search(spec=RKME(n_points=50, seed=1, device="cpu").fit(ex.X_test), top=3)
    assert result["singles"][0]["id"] == by_name[ex.semantic["Name"]["Values"]]

    # The same bundle again: everything is already there.
    code, out = _run(argv, capsys)
    assert code == 0 and f"imported 0 of {len(examples)}: {len(examples)} already" in out, out
    assert admin.learnwares(status="accepted")["total"] == len(examples)


def test_bad_entries_are_rejected_and_the_rest_imported(target, admin, tmp_path):
    made = write_bundle(tmp_path / "b", 5, seed=7)
    lines = (tmp_path / "b" / "manifest.jsonl").read_text().splitlines()
    bad_sha = json.loads(lines[1])
    bad_sha["sha256"] = "0" * 64
    bad_spec = json.loads(lines[3])
    bad_spec["stat_spec"] = '{"z": [[1, 2]], "beta": [1], "gamma": -1}'
    lines[1], lines[3] = json.dumps(bad_sha), json.dumps(bad_spec)
    (tmp_path / "b" / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    from wharf.cli.bulk import pack_bundle

    accepted = admin.bulk_import(pack_bundle(tmp_path / "b", tmp_path / "b.tar"), trusted=True)
    assert accepted["entries"] == 5 and accepted["batches"] == 3
    job = admin.wait(accepted["job_id"], timeout=120)
    result = job["result"]
    assert (result["imported"], result["rejected"], result["duplicates"]) == (3, 2, 0)
    reasons = {r["line"]: r["reason"] for r in result["rejected_entries"]}
    assert set(reasons) == {2, 4}
    assert "sha256" in reasons[2] and "gamma must be > 0" in reasons[4]
    assert job["progress"] == 1.0 and job["kind"] == "index"

    # Data drawn around a learnware's centre finds that learnware.
    import numpy as np

    rng = np.random.default_rng(0)
    X = made[4].centre + rng.normal(scale=0.5, size=(200, 10))
    result = admin.search(spec=RKME(n_points=30, seed=0, device="cpu").fit(X), top=1)
    assert result["singles"][0]["name"] == made[4].name

    # The package is served from the uploaded tar (no object of its own), and the tar goes
    # with the last learnware that keeps its package there.
    found = result["singles"][0]["id"]
    got = admin.http.get(
        f"/v1/learnwares/{found}/package", params={"original": True}, follow_redirects=True
    )
    assert got.content == made[4].package
    assert admin.download(found, tmp_path / "got.zip").stat().st_size > 0  # the served layout
    packs = set((target.data_dir / "objects").glob("bulk/*/bundle.tar"))
    names = {made[i].name for i in (0, 2, 4)}
    page = admin.learnwares(status="accepted", limit=500)["items"]
    mine = [lw["id"] for lw in page if lw["name"] in names]
    assert len(mine) == 3
    for lid in mine:
        assert len(set((target.data_dir / "objects").glob("bulk/*/bundle.tar"))) == len(packs)
        admin.delete(lid)
    left = set((target.data_dir / "objects").glob("bulk/*/bundle.tar"))
    assert len(left) == len(packs) - 1 and left < packs
    other = next(lw["id"] for lw in page if lw["name"] not in names)  # in the other pack
    assert admin.download(other, tmp_path / "other.zip").stat().st_size > 0


def test_only_admins_may_import_and_archives_are_checked(target, admin, tmp_path):
    write_bundle(tmp_path / "b", 1, seed=9)
    from wharf.cli.bulk import pack_bundle

    tar = pack_bundle(tmp_path / "b", tmp_path / "b.tar")
    objects = target.data_dir / "objects"
    before = sorted(p for p in objects.glob("bulk/**/*") if p.is_file())
    token = admin.create_token("e2e", user="mallory")["token"]
    with WharfClient(target.url, token) as mallory, pytest.raises(WharfError) as err:
        mallory.bulk_import(tar, trusted=True)
    assert err.value.status == 403

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as out, tarfile.open(tar) as src:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 1
        out.addfile(info, io.BytesIO(b"x"))
    evil.seek(0)
    with pytest.raises(WharfError) as err:
        admin.bulk_import(evil, trusted=True)
    assert err.value.status == 422 and "leaves the bundle" in str(err.value)
    with pytest.raises(WharfError) as err:
        admin.bulk_import(tar, trusted=False)
    assert err.value.status == 422 and "wharf bulk-index" in str(err.value)
    # Nothing of the refused uploads stays; the earlier imports left only their packs.
    assert sorted(p for p in objects.glob("bulk/**/*") if p.is_file()) == before
    assert before and all(p.name == "bundle.tar" for p in before)


# -- users' bulk submissions: every package checked ------------------------------------------


def _user(market, name: str) -> str:
    with WharfClient(market.url, market.token) as admin:
        return admin.create_token("bulk", user=name)["token"]


def _rate_limited(market) -> list[str]:
    import httpx

    text = httpx.get(f"{market.url}/metrics").text
    return [
        line
        for line in text.splitlines()
        if line.startswith("wharf_rate_limited_requests_total{") and float(line.split()[-1])
    ]


def test_a_users_bundle_gets_every_entry_checked_with_reasons(source, tmp_path, capsys):
    folder = tmp_path / "pkgs"
    made = write_packages(folder, 3, seed=21)
    broken = synthetic_learnware(3, seed=21, broken=True)
    (folder / "broken.zip").write_bytes(broken.package)
    (folder / "broken.json").write_text(json.dumps(broken.semantic))
    unlicensed = synthetic_learnware(4, seed=21)
    (folder / "unlicensed.zip").write_bytes(unlicensed.package)
    (folder / "unlicensed.json").write_text(
        json.dumps({k: v for k, v in unlicensed.semantic.items() if k != "License"})
    )
    (folder / "unspecified.zip").write_bytes(synthetic_learnware(5, seed=21).package)
    (folder / "zz-copy.zip").write_bytes(made[0].package)
    (folder / "zz-copy.json").write_text(json.dumps(made[0].semantic))
    token = _user(source, "carol")

    argv = ["bulk-index", str(folder), "--url", source.url, "--token", token, "--timeout", "300"]
    code, out = _run(argv, capsys)
    assert code == 1, out
    assert out.startswith(
        "accepted 3, rejected 1, refused 2, failed 0, already in the market 1 (of 7)"
    ), out
    lines = {line.split(":")[0].split(" (")[0].strip(): line for line in out.splitlines()[1:]}
    assert ": rejected: " in lines["broken.zip"] and "learnware" in lines["broken.zip"], out
    assert "License" in lines["unlicensed.zip"] and ": refused: " in lines["unlicensed.zip"]
    assert "no semantic spec" in lines["unspecified.zip"]
    assert ": duplicate: the same package as synthetic-21-0.zip" in lines["zz-copy.zip"], out

    with WharfClient(source.url, token) as carol:
        mine = carol.learnwares(mine=True)["items"]
        assert sorted(lw["status"] for lw in mine) == ["accepted"] * 3 + ["rejected"]
        assert {lw["owner"] for lw in mine} == {"carol"}
        rejected = next(lw for lw in mine if lw["status"] == "rejected")
        reason = lines["broken.zip"].split(": rejected: ", 1)[1]
        assert reason and reason in carol.log(rejected["id"])  # the log's first failure
        assert "REJECTED" in carol.log(rejected["id"])


def test_bulk_index_of_dozens_on_default_rate_limits_has_no_429(source, tmp_path, capsys):
    n = 40  # with one request per package this would take most of a minute's write budget
    write_packages(tmp_path / "pkgs", n, seed=22)
    token = _user(source, "dave")
    argv = ["bulk-index", str(tmp_path / "pkgs"), "--url", source.url, "--token", token]
    code, out = _run([*argv, "--timeout", "600"], capsys)
    assert code == 0, out
    assert out.startswith(f"accepted {n}, rejected 0, refused 0, failed 0"), out
    assert "429" not in out
    assert _rate_limited(source) == []
    with WharfClient(source.url, token) as dave:
        assert dave.learnwares(mine=True, status="accepted")["total"] == n


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A market whose users may have 10 checks waiting, 8 entries a bulk submission."""
    with pytest.MonkeyPatch.context() as mp:
        _embedded_env(mp)
        mp.setenv("WHARF_MAX_PENDING_CHECKS", "10")
        mp.setenv("WHARF_BULK_SUBMIT_MAX_ENTRIES", "8")
        with LocalMarket(tmp_path_factory.mktemp("tight"), workers=2) as market:
            yield market


def test_quotas_refuse_with_4xx_and_bulk_index_still_checks_everything(tight, tmp_path, capsys):
    from wharf.cli.bulk import find_items, pack_submission

    n = 25
    write_packages(tmp_path / "pkgs", n, seed=23)
    token = _user(tight, "erin")
    items = find_items(tmp_path / "pkgs")
    with WharfClient(tight.url, token) as erin:
        with pytest.raises(WharfError) as err:
            erin.bulk_submit(pack_submission(items[:9], tmp_path / "nine.tar"))
        assert err.value.status == 413 and err.value.problem["max_entries"] == 8
        assert "WHARF_BULK_SUBMIT_MAX_ENTRIES" in str(err.value)
        first = erin.bulk_submit(pack_submission(items[:8], tmp_path / "eight.tar"))
        with pytest.raises(WharfError) as err:
            erin.bulk_submit(pack_submission(items[8:11], tmp_path / "three.tar"))
        assert err.value.status == 429 and err.value.retry_after == 30
        assert err.value.problem["max_pending_checks"] == 10
        assert "WHARF_MAX_PENDING_CHECKS" in str(err.value)
        assert erin.wait(first["job_id"], timeout=300)["result"]["accepted"] == 8

    # The command cuts its tars to 8 packages and waits for room: every package is checked.
    argv = ["bulk-index", str(tmp_path / "pkgs"), "--url", tight.url, "--token", token]
    code, out = _run([*argv, "--timeout", "600"], capsys)
    assert code == 0, out
    assert out.startswith(f"accepted {n - 8}, rejected 0, refused 0, failed 0"), out
    assert f"already in the market 8 (of {n})" in out.splitlines()[0]
    with WharfClient(tight.url, token) as erin:
        assert erin.learnwares(mine=True, status="accepted")["total"] == n
    assert _rate_limited(tight) == []

"""Bulk indexing without workers: the bundle format, trusted imports straight into a catalog,
export, and the API's checks of an uploaded bundle (FastAPI TestClient, real SQLite and
local store). ``test_bulk_e2e.py`` runs the same through real worker processes."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from wharf.examples.bundles import write_bundle
from wharf.market.bundle import MANIFEST, BundleError
from wharf.market.catalog import Catalog, Job, JobKind, LearnwareStatus, Role, repo
from wharf.market.packages import open_package
from wharf.market.settings import Settings
from wharf.market.store import LocalStore, S3Store
from wharf.market.transfer import export_bundle, import_bundle

MAX_PACKAGE = 1 << 20


@pytest.fixture
def market(catalog, tmp_path):
    """A catalog (SQLite, then PostgreSQL), a local store and an admin's id."""
    with catalog.session() as s:
        admin = repo.create_user(s, "admin", Role.admin)
    return catalog, LocalStore(tmp_path / "objects"), admin.id


LIMITS = Settings().spec_limits


def _import(market, bundle: Path, **kwargs):
    catalog, store, admin_id = market
    return import_bundle(
        catalog,
        store,
        bundle,
        owner_id=admin_id,
        who="admin",
        max_package_bytes=MAX_PACKAGE,
        spec_limits=LIMITS,
        **kwargs,
    )


def _lines(bundle: Path) -> list[dict]:
    return [json.loads(line) for line in (bundle / MANIFEST).read_text().splitlines()]


def _write_lines(bundle: Path, records: list[dict]) -> None:
    (bundle / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in records))


def test_trusted_import_accepts_logs_and_skips_duplicates(market, tmp_path):
    catalog, store, _ = market
    made = write_bundle(tmp_path / "bundle", 7)
    report = _import(market, tmp_path / "bundle", batch_size=3)
    assert (report.entries, report.imported, report.duplicate_count) == (7, 7, 0)
    with catalog.session() as s:
        rows = repo.get_learnwares(s, repo.accepted_spec_ids(s))
        assert [lw.content_sha256 for lw in rows] == [lw.sha256 for lw in made]
        assert all(lw.status == LearnwareStatus.accepted and lw.checked_at for lw in rows)
        assert "trusted bundle" in rows[0].check_log
        assert rows[0].spec_shape == [10] and rows[0].spec_points == 50
        assert [link.scenario for link in rows[1].scenario_links] == rows[1].scenarios
        assert store.open(rows[0].package_key).read() == made[0].package
        assert rows[0].package_key.startswith("packages/")
        # Every accepted row is in the index change log: the search workers will see them.
        assert sorted(lid for _, lid in repo.index_changes_after(s, 0)) == [lw.id for lw in rows]

    again = _import(market, tmp_path / "bundle")
    assert (again.imported, again.duplicate_count) == (0, 7)
    assert again.duplicates[0]["existing_learnware"] == repo.format_id(rows[0].id)
    with catalog.session() as s:
        assert repo.learnware_counts(s) == {"accepted": 7}


def test_bad_entries_are_rejected_with_a_reason_and_the_rest_imported(market, tmp_path):
    bundle = tmp_path / "bundle"
    write_bundle(bundle, 8)
    records = _lines(bundle)
    records[0]["sha256"] = "0" * 64  # the package's bytes do not match
    spec = json.loads(records[1]["stat_spec"])
    spec["beta"] = spec["beta"][:-1]
    records[1]["stat_spec"] = json.dumps(spec)  # not a valid RKME any more
    records[2]["gamma"] = 0.5  # disagrees with the spec it describes
    records[3]["semantic_spec"]["Task"]["Values"] = ["Cooking"]
    records[4]["package"] = "../../etc/passwd"
    (bundle / records[5]["package"]).unlink()
    records[6]["size"] += 1
    _write_lines(bundle, records)
    with (bundle / MANIFEST).open("a") as fh:
        fh.write("\n{not json\n")

    report = _import(market, bundle)
    assert report.imported == 1 and report.rejected_count == 8
    reasons = {r["line"]: r["reason"] for r in report.rejected}
    assert "sha256" in reasons[1] and "manifest says" in reasons[1]
    assert "beta has 49 weights" in reasons[2]
    assert "gamma" in reasons[3] and "must agree" in reasons[3]
    assert reasons[4].startswith("semantic_spec.Task")
    assert "leaves the bundle" in reasons[5]
    assert "not a file in the bundle" in reasons[6]
    assert "bytes" in reasons[7]
    assert "not a JSON object" in reasons[10]
    catalog = market[0]
    with catalog.session() as s:
        assert repo.learnware_counts(s) == {"accepted": 1}
    assert len(market[1].list("packages/")) == 1  # nothing stored for the rejected ones


def test_duplicates_inside_one_bundle_are_reported(market, tmp_path):
    bundle = tmp_path / "bundle"
    write_bundle(bundle, 2)
    records = _lines(bundle)
    _write_lines(bundle, [records[0], records[1], records[0]])
    report = _import(market, bundle)
    assert report.imported == 2 and report.duplicates == [
        {"line": 3, "sha256": records[0]["sha256"], "duplicate_of_line": 1}
    ]


def test_image_and_text_learnwares_import_and_are_found(market, tmp_path):
    import numpy as np
    from wharf.examples.bundles import synthetic_learnware
    from wharf.market.index.search import search_index
    from wharf.market.index.sync import IndexSync
    from wharf.specification.image import RKMEImage
    from wharf.specification.text import RKMEText

    catalog, store, _ = market
    bundle = tmp_path / "bundle"
    images = write_bundle(bundle, 3, data_type="Image", points=4)
    texts = [synthetic_learnware(i, data_type="Text", seed=1, points=5) for i in range(4)]
    for lw in texts:
        (bundle / json.loads(lw.manifest_line())["package"]).write_bytes(lw.package)
    wrong = json.loads(texts.pop().manifest_line())
    wrong["semantic_spec"]["Data"]["Values"] = ["Image"]  # a text spec on an image learnware
    with (bundle / MANIFEST).open("a") as fh:
        fh.write("".join(lw.manifest_line() + "\n" for lw in texts) + json.dumps(wrong) + "\n")

    report = _import(market, bundle)
    assert (report.imported, report.rejected_count) == (6, 1)
    assert (
        "must be an RKMEImageSpecification, not an RKMETextSpecification"
        in (report.rejected[0]["reason"])
    )
    with catalog.session() as s:
        rows = repo.get_learnwares(s, repo.accepted_spec_ids(s))
        kinds = {lw.name: (lw.data_type, lw.spec_type, lw.spec_shape) for lw in rows}
    assert kinds[images[0].name] == ("Image", "RKMEImageSpecification", [1, 32, 32])
    assert kinds[texts[0].name] == ("Text", "RKMETextSpecification", [384])

    index = IndexSync(catalog, store).start()  # what a search worker builds from the catalog
    assert len(index) == 6 and len(index.partitions) == 2
    for made, kind in ((images, RKMEImage), (texts, RKMEText)):
        rng = np.random.default_rng(3)
        z = made[1].centre + rng.normal(scale=0.5, size=(4, *made[1].centre.shape))
        extra = {} if kind is RKMEImage else {"gamma": 0.1, "language": ["en"]}
        user = kind.from_arrays(z, np.full(4, 0.25), num_points=4, **extra)
        with catalog.session() as s:
            best = repo.get_learnware(s, int(search_index(index, user).singles[0].id))
        assert best.name == made[1].name


def test_export_round_trip(market, tmp_path):
    catalog, store, _ = market
    write_bundle(tmp_path / "bundle", 4)
    _import(market, tmp_path / "bundle")
    with catalog.session() as s:
        ids = repo.accepted_spec_ids(s)
        pending = repo.create_learnware(
            s,
            repo.get_learnware(s, ids[0]).owner_id,
            _lines(tmp_path / "bundle")[0]["semantic_spec"],
            "f" * 64,
            "packages/x.zip",
            3,
        )
    report = export_bundle(catalog, store, tmp_path / "out")
    assert report.exported == 4 and not report.skipped
    exported = _lines(tmp_path / "out")
    original = _lines(tmp_path / "bundle")
    for got, want in zip(exported, original, strict=True):
        assert got["sha256"] == want["sha256"] and got["stat_spec"] == want["stat_spec"]
        assert got["semantic_spec"] == want["semantic_spec"]
        assert (tmp_path / "out" / got["package"]).read_bytes() == (
            tmp_path / "bundle" / want["package"]
        ).read_bytes()
        # Beside the bytes as uploaded, a copy the reference's loader reads.
        served = zipfile.ZipFile(tmp_path / "out" / "reference" / f"{got['source_id']}.zip")
        manifest = yaml.safe_load(served.read("learnware.yaml"))
        assert manifest["id"] == got["source_id"]
        assert json.loads(served.read(manifest["semantic_specification"]["file_name"]))["Model"]

    with pytest.raises(BundleError, match="already holds a bundle"):
        export_bundle(catalog, store, tmp_path / "out")
    with pytest.raises(BundleError, match=repo.format_id(pending.id)):
        export_bundle(catalog, store, tmp_path / "some", ids=[ids[1], pending.id])
    report = export_bundle(catalog, store, tmp_path / "some", ids=[ids[1]])
    assert [r["source_id"] for r in _lines(tmp_path / "some")] == [repo.format_id(ids[1])]

    with catalog.session() as s:  # a package lost from the store is skipped, and said so
        store.delete(repo.get_learnware(s, ids[2]).package_key)
    report = export_bundle(catalog, store, tmp_path / "lossy")
    assert report.exported == 3 and report.skipped[0][0] == repo.format_id(ids[2])


# -- the API ---------------------------------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    return _api(tmp_path)


def _api(tmp_path: Path, **overrides) -> TestClient:
    from wharf.api.app import create_app

    settings = Settings(
        data_dir=tmp_path / "market",
        **{"max_upload_bytes": 200_000, "bulk_max_bytes": 2_000_000, **overrides},
    )
    catalog = Catalog.create(settings.catalog_url)
    with catalog.session() as s:
        users = {
            name: repo.create_user(s, name, role)
            for name, role in (("admin", Role.admin), ("alice", Role.user), ("bob", Role.user))
        }
        tokens = {name: repo.create_token(s, u.id, "test")[0] for name, u in users.items()}
        ids = {name: u.id for name, u in users.items()}
    client = TestClient(create_app(settings))
    client.tokens, client.catalog, client.store = tokens, catalog, LocalStore(settings.objects_dir)
    client.user_ids = ids
    return client


def tar_of(members: dict[str, bytes | tarfile.TarInfo], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tar:
        for name, data in members.items():
            if isinstance(data, tarfile.TarInfo):
                tar.addfile(data)
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def bundle_tar(tmp_path: Path, n: int = 3, *, top: str = "", gz: bool = False, **extra) -> bytes:
    write_bundle(tmp_path / "bundle", n)
    members = {
        f"{top}{p.relative_to(tmp_path / 'bundle').as_posix()}": p.read_bytes()
        for p in sorted((tmp_path / "bundle").rglob("*"))
        if p.is_file()
    }
    return tar_of({**members, **extra}, gz=gz)


def upload(api, body: bytes, who: str | None = "admin", trusted: str | None = "true"):
    return api.post(
        "/v1/bulk-imports",
        headers={"Authorization": f"Bearer {api.tokens[who]}"} if who else {},
        files={"bundle": ("bundle.tar", body, "application/x-tar")},
        data={"trusted": trusted} if trusted is not None else {},
    )


@pytest.mark.parametrize("top, gz", [("", False), ("export/", True), ("./", False)])
def test_a_bundle_upload_is_staged_and_queued(api, tmp_path, top, gz):
    r = upload(api, bundle_tar(tmp_path, 3, top=top, gz=gz))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["entries"] == 3 and body["batches"] == 1
    assert body["status_url"].endswith(f"/v1/jobs/{body['job_id']}")
    with api.catalog.session() as s:
        job = repo.get_job(s, body["job_id"])
        assert job.kind == JobKind.index and job.request["entries"] == 3
        keys = api.store.list(job.request["prefix"] + "/")
    prefix = job.request["prefix"]
    assert keys == [f"{prefix}/bundle.tar", f"{prefix}/members.json"]
    assert job.request["batches"][0]["first_line"] == 1
    job = api.get(body["status_url"], headers={"Authorization": f"Bearer {api.tokens['admin']}"})
    assert job.json()["state"] == "queued"


def test_only_admins_may_import_and_only_trusted(api, tmp_path):
    body = bundle_tar(tmp_path, 1)
    assert upload(api, body, who=None).status_code == 401
    r = upload(api, body, who="alice")
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = upload(api, body, trusted=None)
    assert r.status_code == 422 and "wharf bulk-index" in r.json()["detail"]
    assert upload(api, body, trusted="false").status_code == 422


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"../evil.zip": b"x"}, "leaves the bundle"),
        ({"packages/../../evil.zip": b"x"}, "leaves the bundle"),
        ({"/etc/evil": b"x"}, "absolute"),
        ({"packages/l.zip": _link("packages/l.zip", "/etc/passwd", tarfile.SYMTYPE)}, "symbolic"),
        ({"packages/h.zip": _link("packages/h.zip", "/etc/passwd", tarfile.LNKTYPE)}, "hard link"),
        ({"dev": _link("dev", "", tarfile.CHRTYPE)}, "device"),
        ({"packages/big.zip": bytes(300_000)}, "package limit"),
    ],
)
def test_unsafe_archives_are_refused_and_nothing_is_kept(api, tmp_path, extra, message):
    r = upload(api, bundle_tar(tmp_path, 2, **extra))
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"] and r.json()["field"] == "bundle"
    assert api.store.list("bulk/") == []
    with api.catalog.session() as s:
        assert s.query(Job).count() == 0


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not a tar at all" * 100, "not a readable tar"),
        (b"\x1f\x8bnot gzip", "not a valid gzip"),
        (tar_of({"packages/a.zip": b"x"}), "must hold one manifest.jsonl"),
        (tar_of({MANIFEST: b"\n\n"}), "lists no learnwares"),
        (tar_of({MANIFEST: b"{}\n", "a/manifest.jsonl": b"{}\n"}), "found 2"),
        (tar_of({MANIFEST: b"{}\n", MANIFEST + "/": b""}), "twice"),
    ],
)
def test_unusable_uploads_are_422(api, body, message):
    r = upload(api, body)
    assert r.status_code == 422 and message in r.json()["detail"], r.text


def test_bundle_size_limits(api):
    bomb = tar_of(
        {MANIFEST: b"{}\n", "packages/zeros.zip": bytes(190_000)}
        | {f"packages/z{i}.zip": bytes(190_000) for i in range(12)},
        gz=True,
    )
    assert len(bomb) < 100_000  # small upload, large bundle
    r = upload(api, bomb)
    assert r.status_code == 422 and "WHARF_BULK_MAX_BYTES" in r.json()["detail"]
    r = upload(api, bytes(3_200_000))
    assert r.status_code == 413


def test_admin_import_and_export_commands(tmp_path, monkeypatch, capsys):
    from wharf.cli.main import main
    from wharf.market.settings import get_settings

    monkeypatch.setenv("WHARF_DATA_DIR", str(tmp_path / "market"))
    get_settings.cache_clear()
    try:
        catalog = Catalog.create(get_settings().catalog_url)
        with catalog.session() as s:
            repo.create_user(s, "root", Role.admin)
            repo.create_user(s, "plain", Role.user)
        write_bundle(tmp_path / "bundle", 3)
        assert main(["admin", "import", str(tmp_path / "bundle"), "--user", "plain"]) == 1
        assert "not an admin" in capsys.readouterr().err
        assert main(["admin", "import", str(tmp_path / "bundle"), "--user", "root"]) == 0
        assert "imported 3 of 3: 0 already in the market" in capsys.readouterr().out
        assert main(["admin", "export", str(tmp_path / "out"), "--ids", "1,00000003"]) == 0
        assert "exported 2 learnwares" in capsys.readouterr().out
        assert [r["source_id"] for r in _lines(tmp_path / "out")] == ["00000001", "00000003"]
        assert main(["admin", "export", str(tmp_path / "x"), "--ids", "1,7"]) == 1
        assert "00000007" in capsys.readouterr().err
        assert main(["admin", "import", str(tmp_path / "nothing"), "--user", "root"]) == 1
        assert "holds no manifest.jsonl" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def _stage(store, prefix: str, bundle: Path, *, batch_size: int):
    """Stage the bundle directory as its tar upload would be."""
    from wharf.market.bulk import stage_upload

    files = {
        p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*") if p.is_file()
    }
    return stage_upload(
        io.BytesIO(tar_of(files)),
        store,
        prefix,
        max_bytes=1 << 24,
        max_package_bytes=MAX_PACKAGE,
        max_line_bytes=1 << 20,
        batch_size=batch_size,
    )


def test_staged_batches_keep_manifest_line_numbers(market, tmp_path):
    from wharf.market.bulk import import_staged_batch, release_staged

    catalog, store, admin_id = market
    bundle = tmp_path / "bundle"
    write_bundle(bundle, 5)
    lines = (bundle / MANIFEST).read_text().splitlines()
    lines[2] = lines[2].replace('"size":', '"size":1,"_":')  # a line the importer rejects
    (bundle / MANIFEST).write_text("\n".join([lines[0], "", *lines[1:3], "  ", *lines[3:]]))
    staged = _stage(store, "bulk/t", bundle, batch_size=2)
    assert staged.entries == 5
    assert [(b.first_line, b.entries) for b in staged.batches] == [(1, 2), (4, 2), (7, 1)]
    reports = [
        import_staged_batch(
            catalog,
            store,
            "bulk/t",
            batch,
            owner_id=admin_id,
            check_log="imported",
            max_package_bytes=MAX_PACKAGE,
            spec_limits=LIMITS,
        )
        for batch in staged.batches
    ]
    assert [r.imported for r in reports] == [2, 1, 1]
    assert reports[1].rejected == [{"line": 4, "reason": reports[1].rejected[0]["reason"]}]
    assert "bytes but the manifest says" in reports[1].rejected[0]["reason"]
    # A batch run again (its worker died after the commit) finds its own rows: no duplicates.
    again = import_staged_batch(
        catalog,
        store,
        "bulk/t",
        staged.batches[0],
        owner_id=admin_id,
        check_log="imported",
        max_package_bytes=MAX_PACKAGE,
        spec_limits=LIMITS,
    )
    assert (again.imported, again.duplicate_count) == (2, 0)
    with catalog.session() as s:
        assert repo.learnware_counts(s) == {"accepted": 4}
        release_staged(s, store, "bulk/t")
    assert store.list("bulk/") == ["bulk/t/bundle.tar"]  # the pack of the four


def test_packed_packages_are_read_and_released_with_their_pack(market, tmp_path):
    """A bulk import keeps the packages in its tar: each is read from its byte range, and the
    tar goes with the last learnware that uses it (not while its import may add more)."""
    from wharf.market.bulk import import_staged_batch, release_staged
    from wharf.market.packages import download_package, open_package, release_package

    catalog, store, admin_id = market
    made = write_bundle(tmp_path / "bundle", 3)
    staged = _stage(store, "bulk/p", tmp_path / "bundle", batch_size=10)
    with catalog.session() as s:  # the import's job, still running, names its pack
        job = repo.create_job(s, "index", owner_id=admin_id, request=staged.to_dict())
        repo.start_job(s, job.id)
    import_staged_batch(
        catalog,
        store,
        "bulk/p",
        staged.batches[0],
        owner_id=admin_id,
        check_log="imported",
        max_package_bytes=MAX_PACKAGE,
        spec_limits=LIMITS,
    )
    assert store.list("packages/") == []  # nothing written per learnware
    with catalog.session() as s:
        rows = repo.get_learnwares(s, repo.accepted_spec_ids(s))
        by_sha = {lw.content_sha256: lw for lw in rows}
        for item in made:
            lw = by_sha[item.sha256]
            assert (lw.package_key, lw.package_size) == ("bulk/p/bundle.tar", len(item.package))
            with open_package(store, lw) as fh:
                assert fh.read() == item.package
            download_package(store, lw, tmp_path / "copy.zip")
            assert (tmp_path / "copy.zip").read_bytes() == item.package
        ids = [lw.id for lw in rows]
    for lid in ids:
        with catalog.session() as s:
            lw = repo.delete_learnware(s, lid)
            where = (lw.package_key, lw.package_offset)
        with catalog.session(read_only=True) as s:
            release_package(s, store, *where)
        assert store.exists("bulk/p/bundle.tar")  # the job may still add learnwares to it
    with catalog.session() as s:
        repo.finish_job(s, job.id, {})
    with catalog.session(read_only=True) as s:
        release_staged(s, store, "bulk/p")
    assert store.list("bulk/") == []


def test_staged_import_from_either_store(object_store, tmp_path):
    """Local: read in place. S3 (no random access): downloaded once per process, then
    forgotten."""
    from wharf.market import bulk

    catalog = Catalog.create(f"sqlite:///{tmp_path / 'c.db'}")
    with catalog.session() as s:
        admin_id = repo.create_user(s, "admin", Role.admin).id
    body = io.BytesIO(bundle_tar(tmp_path, 3, gz=True))
    staged = bulk.stage_upload(
        body,
        object_store,
        "bulk/s",
        max_bytes=1 << 24,
        max_package_bytes=MAX_PACKAGE,
        max_line_bytes=1 << 20,
        batch_size=2,
    )
    for batch in staged.batches:
        bulk.import_staged_batch(
            catalog,
            object_store,
            "bulk/s",
            batch,
            owner_id=admin_id,
            check_log="imported",
            max_package_bytes=MAX_PACKAGE,
            spec_limits=LIMITS,
        )
    copy = bulk._cached.get("file")
    assert (copy is not None) == isinstance(object_store, S3Store)
    bulk.forget_bundle()
    assert copy is None or not Path(copy).exists()
    with catalog.session() as s:
        assert repo.learnware_counts(s) == {"accepted": 3}
        rows = repo.get_learnwares(s, repo.accepted_spec_ids(s))
        assert {(lw.package_key, lw.package_offset is not None) for lw in rows} == {
            ("bulk/s/bundle.tar", True)
        }
        packages = set()
        for lw in rows:
            with open_package(object_store, lw) as fh:
                packages.add(hashlib.sha256(fh.read()).hexdigest())
        assert packages == {lw.content_sha256 for lw in rows}
        bulk.release_staged(s, object_store, "bulk/s")
    assert object_store.list("bulk/") == ["bulk/s/bundle.tar"]


def test_bulk_index_finds_packages_and_their_semantic_specs(tmp_path):
    import zipfile

    from wharf.cli.bulk import find_items

    semantic = {"Name": {"Type": "String", "Values": "x"}}
    folder = tmp_path / "pkgs"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        with zipfile.ZipFile(folder / f"{name}.zip", "w") as zf:
            zf.writestr(f"{name}/learnware.yaml", "model: {}\n")
            if name == "c":
                zf.writestr("c/semantic_spec.json", json.dumps(semantic))
    (folder / "a.json").write_text(json.dumps(semantic))
    (folder / "b.semantic.json").write_text(json.dumps(semantic))
    items = {i.package.name: i for i in find_items(folder)}
    assert [items[n].semantic for n in ("a.zip", "b.zip", "c.zip")] == [semantic] * 3
    assert items["d.zip"].semantic is None and "d.json" in items["d.zip"].problem

    manifest = tmp_path / "list.jsonl"
    manifest.write_text(
        "\n".join(
            [
                json.dumps({"package": "pkgs/a.zip", "semantic_spec": semantic}),
                json.dumps({"package": "pkgs/d.zip", "semantic": "pkgs/a.json"}),
                "",
                json.dumps({"package": "pkgs/b.zip"}),
                "{broken",
            ]
        )
    )
    items = find_items(manifest)
    assert [i.semantic for i in items[:3]] == [semantic] * 3
    assert items[3].problem and "line 5" in items[3].problem


# -- bulk submissions: every package checked -------------------------------------------------


def _submission(n: int, *, seed: int = 3, extra: dict | None = None, lines: tuple = ()):
    """A submission bundle of ``n`` synthetic packages (tar members), plus ``extra`` members
    and ``lines`` after the packages' lines; returns the tar's members and the learnwares."""
    from wharf.examples.bundles import synthetic_learnware

    made = [synthetic_learnware(i, seed=seed) for i in range(n)]
    manifest = [
        json.dumps({"package": f"packages/{i}.zip", "semantic_spec": lw.semantic})
        for i, lw in enumerate(made)
    ]
    members = {f"packages/{i}.zip": lw.package for i, lw in enumerate(made)}
    members = {MANIFEST: ("\n".join([*manifest, *lines]) + "\n").encode(), **members}
    return {**members, **(extra or {})}, made


def _stage_submission(catalog, store, owner_id: int, members: dict, *, batch_size: int):
    from wharf.market.bulk import new_prefix, stage_upload
    from wharf.market.bulk_submit import REQUEST_KEY

    prefix = new_prefix()
    staged = stage_upload(
        io.BytesIO(tar_of(members)),
        store,
        prefix,
        max_bytes=10 * MAX_PACKAGE,
        max_package_bytes=MAX_PACKAGE,
        max_line_bytes=MAX_PACKAGE,
        batch_size=batch_size,
    )
    with catalog.session() as s:
        request = {REQUEST_KEY: "t.tar", "trusted": False, **staged.to_dict()}
        job = repo.create_job(
            s, JobKind.index, owner_id=owner_id, request={**request, "staged_batches": []}
        )
    return job.id, staged


def _end_check(catalog, job_id: str, learnware_id: int, *, accepted: bool, log: str):
    from wharf.market.bulk_submit import settle

    with catalog.session() as s:
        assert repo.start_job(s, job_id) is not None
        assert repo.claim_for_check(s, learnware_id)
        repo.finish_check(
            s, learnware_id, accepted=accepted, log=log, spec_meta=None, stat_spec_json=None
        )
        status = "accepted" if accepted else "rejected"
        repo.finish_job(s, job_id, {"status": status, "learnware_id": repo.format_id(learnware_id)})
        return settle(s, job_id)


REJECTED_LOG = (
    "2026-12-05T10:00:00.000Z INFO package: package.zip\n"
    "2026-12-05T10:00:01.000Z FAIL outputs: 20 rows of 3 values, but Output.Dimension is 1\n"
    "2026-12-05T10:00:01.000Z FAIL REJECTED\n"
)


def test_a_bulk_submission_makes_each_entry_a_check_and_settles_with_the_last(market, tmp_path):
    from wharf.market.bulk_submit import checks_waiting, stage_batch

    catalog, store, _ = market
    with catalog.session() as s:
        alice = repo.create_user(s, "alice").id
        bob = repo.create_user(s, "bob").id
    members, made = _submission(
        4,
        extra={"packages/copy.zip": None},  # filled below: line 1's bytes again
        lines=(
            json.dumps({"package": "packages/copy.zip", "semantic_spec": {"x": 1}}),
            json.dumps({"package": "packages/copy.zip", "semantic_spec": None}),
            json.dumps({"package": "packages/missing.zip", "semantic_spec": made_semantic()}),
            "{not json",
            json.dumps({"package": "packages/copy.zip", "semantic_spec": made_semantic()}),
            json.dumps({"package": "packages/bobs.zip", "semantic_spec": made_semantic()}),
        ),
    )
    members["packages/copy.zip"] = made[0].package
    members["packages/bobs.zip"] = b"bob's package, already submitted by bob"
    with catalog.session() as s:  # bob's, still pending: private to him
        sha = hashlib.sha256(members["packages/bobs.zip"]).hexdigest()
        repo.create_learnware(s, bob, made[1].semantic, sha, "packages/b.zip", 40)
    job_id, staged = _stage_submission(catalog, store, alice, members, batch_size=3)
    assert staged.entries == 10 and len(staged.batches) == 4
    with catalog.session(read_only=True) as s:
        assert checks_waiting(s, alice) == 10  # not yet staged: every entry counts

    outcomes = [
        stage_batch(catalog, store, job_id, i, max_package_bytes=MAX_PACKAGE) for i in range(4)
    ]
    checks = [c for o in outcomes for c in o.checks]
    assert len(checks) == 4
    assert [o.staged for o in outcomes] == [False, False, False, True]
    assert not any(o.finished for o in outcomes)
    with catalog.session(read_only=True) as s:
        assert checks_waiting(s, alice) == 4
        job = repo.get_job(s, job_id)
        assert job.state == "running" and job.progress == pytest.approx(6 / 10)
        for (check_id, lid), lw in zip(checks, made, strict=True):
            row = repo.get_learnware(s, lid)
            child = repo.get_job(s, check_id)
            assert (row.status, row.owner_id, row.package_key) == ("pending", alice, staged.pack)
            assert (child.parent_id, child.kind, child.learnware_id) == (job_id, "check", lid)
            with open_package(store, row) as fh:
                assert fh.read() == lw.package
    # A batch staged again (its worker died before it had sent its checks) sends them again
    # and adds nothing.
    again = stage_batch(catalog, store, job_id, 0, max_package_bytes=MAX_PACKAGE)
    assert again.checks == checks[:3] and again.staged
    with catalog.session(read_only=True) as s:
        assert s.query(Job).filter(Job.parent_id == job_id).count() == 4

    ended = [
        _end_check(catalog, check_id, lid, accepted=i != 2, log=REJECTED_LOG)
        for i, (check_id, lid) in enumerate(checks)
    ]
    assert ended == [None, None, None, staged.prefix]  # the last check ends the bulk job
    with catalog.session(read_only=True) as s:
        job = repo.get_job(s, job_id)
        assert checks_waiting(s, alice) == 0
    result = job.result
    assert (job.state, job.progress) == ("succeeded", 1.0)
    assert {k: result[k] for k in ("entries", "submitted", "accepted", "rejected")} == {
        "entries": 10,
        "submitted": 4,
        "accepted": 3,
        "rejected": 1,
    }
    assert (result["refused"], result["duplicates"], result["failed"]) == (4, 2, 0)
    by_line = {o["line"]: o for o in result["outcomes"]}
    assert sorted(by_line) == list(range(1, 11))
    assert [by_line[i]["outcome"] for i in range(1, 5)] == ["accepted"] * 2 + [
        "rejected",
        "accepted",
    ]
    assert by_line[3]["reason"] == "outputs: 20 rows of 3 values, but Output.Dimension is 1"
    assert by_line[1]["learnware_id"] == repo.format_id(checks[0][1])
    assert "semantic_spec" in by_line[5]["reason"] and by_line[5]["outcome"] == "refused"
    assert "JSON object" in by_line[6]["reason"]
    assert "not in the bundle" in by_line[7]["reason"]
    assert "not a JSON object" in by_line[8]["reason"]
    # Line 1's package again, in a later batch: alice's own learnware, so it is named.
    assert by_line[9]["outcome"] == "duplicate"
    assert by_line[9]["learnware_id"] == repo.format_id(checks[0][1])
    # Bob's package is not public: alice learns neither its id nor its state.
    assert by_line[10]["outcome"] == "duplicate" and "learnware_id" not in by_line[10]
    assert "another user" in by_line[10]["reason"]


def made_semantic() -> dict:
    from wharf.examples.bundles import synthetic_learnware

    return synthetic_learnware(99, seed=3).semantic


def test_a_bulk_submission_with_nothing_to_check_ends_when_staged(market, tmp_path):
    from wharf.market.bulk_submit import stage_batch

    catalog, store, admin_id = market
    members, _ = _submission(0, lines=("{}", json.dumps({"package": "a.zip"})))
    job_id, staged = _stage_submission(catalog, store, admin_id, members, batch_size=10)
    outcome = stage_batch(catalog, store, job_id, 0, max_package_bytes=MAX_PACKAGE)
    assert outcome.finished and outcome.prefix == staged.prefix and not outcome.checks
    with catalog.session(read_only=True) as s:
        job = repo.get_job(s, job_id)
    assert job.state == "succeeded" and job.result["refused"] == 2
    assert "missing field(s): package, semantic_spec" in job.result["outcomes"][0]["reason"]


def submit_bundle(api, body: bytes, who: str | None = "alice"):
    return api.post(
        "/v1/bulk-submissions",
        headers={"Authorization": f"Bearer {api.tokens[who]}"} if who else {},
        files={"bundle": ("s.tar", body, "application/x-tar")},
    )


def test_any_user_may_send_a_bundle_for_checking(api):
    members, _ = _submission(3)
    r = submit_bundle(api, tar_of(members, gz=True))
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["entries"], body["batches"]) == (3, 1)
    with api.catalog.session() as s:
        job = repo.get_job(s, body["job_id"])
        assert (job.kind, job.state, job.owner_id) == ("index", "queued", api.user_ids["alice"])
        assert job.request["bulk_submission"] == "s.tar" and job.request["trusted"] is False
    prefix = job.request["prefix"]
    assert api.store.list(prefix + "/") == [f"{prefix}/bundle.tar", f"{prefix}/members.json"]
    assert submit_bundle(api, tar_of(members), who=None).status_code == 401

    # The archive rules of a trusted import apply; nothing of a refused upload is kept.
    r = submit_bundle(api, tar_of({**members, "../evil.zip": b"x"}))
    assert r.status_code == 422 and "leaves the bundle" in r.json()["detail"]
    r = submit_bundle(api, tar_of({**members, "packages/big.zip": bytes(300_000)}))
    assert r.status_code == 422 and "WHARF_MAX_UPLOAD_BYTES" in r.json()["detail"]
    assert api.store.list("bulk/") == [f"{prefix}/bundle.tar", f"{prefix}/members.json"]


def test_bulk_submissions_are_bounded_per_upload_and_per_user(tmp_path):
    api = _api(tmp_path, bulk_submit_max_entries=3, max_pending_checks=5)
    r = submit_bundle(api, tar_of(_submission(4)[0]))
    assert r.status_code == 413, r.text
    problem = r.json()
    assert "WHARF_BULK_SUBMIT_MAX_ENTRIES" in problem["detail"]
    assert (problem["entries"], problem["max_entries"]) == (4, 3)
    assert api.store.list("bulk/") == []

    alice = api.user_ids["alice"]
    with api.catalog.session() as s:  # three checks of alice's, queued or running
        for i in range(3):
            job = repo.create_job(s, JobKind.check, owner_id=alice)
            if i == 0:
                repo.start_job(s, job.id)
        repo.finish_job(s, repo.create_job(s, JobKind.check, owner_id=alice).id)  # ended
    r = submit_bundle(api, tar_of(_submission(3)[0]))
    assert r.status_code == 429, r.text
    problem = r.json()
    assert (problem["pending_checks"], problem["max_pending_checks"]) == (3, 5)
    assert "WHARF_MAX_PENDING_CHECKS" in problem["detail"] and "at most 2" in problem["detail"]
    assert r.headers["Retry-After"] == "30"
    assert api.store.list("bulk/") == []

    assert submit_bundle(api, tar_of(_submission(2)[0])).status_code == 202
    # Its two entries count from the upload on, before they are checks: alice is at 5.
    r = submit_bundle(api, tar_of(_submission(1, seed=4)[0]))
    assert r.status_code == 429 and r.json()["pending_checks"] == 5, r.text
    assert "retry when" in r.json()["detail"]
    # Bob's quota is his own.
    assert submit_bundle(api, tar_of(_submission(3, seed=5)[0]), who="bob").status_code == 202


def test_a_bulk_submission_checks_the_users_own_rejected_learnware_again(market, tmp_path):
    from wharf.market.bulk_submit import stage_batch

    catalog, store, _ = market
    members, made = _submission(1, seed=8)
    with catalog.session() as s:
        alice = repo.create_user(s, "alice").id
        stale = dict(made[0].semantic, Name={"Type": "String", "Values": "old name"})
        lw = repo.create_learnware(s, alice, stale, made[0].sha256, "packages/old.zip", 9)
        repo.claim_for_check(s, lw.id)
        repo.finish_check(
            s, lw.id, accepted=False, log=REJECTED_LOG, spec_meta=None, stat_spec_json=None
        )
    job_id, _ = _stage_submission(catalog, store, alice, members, batch_size=10)
    outcome = stage_batch(catalog, store, job_id, 0, max_package_bytes=MAX_PACKAGE)
    assert [lid for _, lid in outcome.checks] == [lw.id]
    with catalog.session(read_only=True) as s:
        again = repo.get_learnware(s, lw.id)
        assert again.status == "pending" and again.name == made[0].name
        assert again.package_key == "packages/old.zip"  # the package it had: the same bytes
    assert _end_check(catalog, outcome.checks[0][0], lw.id, accepted=True, log="ok\n")
    with catalog.session(read_only=True) as s:
        result = repo.get_job(s, job_id).result
    assert result["accepted"] == 1 and result["duplicates"] == 0
    assert result["outcomes"][0] == {
        "line": 1,
        "package": "packages/0.zip",
        "outcome": "accepted",
        "learnware_id": repo.format_id(lw.id),
        "resubmitted": True,
    }


def test_one_by_one_writes_wait_out_429s_together_for_as_long_as_it_takes():
    """The fallback's writes share one pause after a 429 and retry without a try limit (ten
    tries of one second each failed packages when four threads shared a 60-a-minute budget),
    up to the command's deadline."""
    import threading
    import time

    from wharf.cli.bulk import _Pacer, _patient
    from wharf.client import WharfError

    budget = threading.Semaphore(0)
    calls = []

    def write() -> str:
        calls.append(time.monotonic())
        if not budget.acquire(blocking=False):
            raise WharfError(429, {"detail": "too many requests"}, retry_after=0.01)
        return "ok"

    def refill() -> None:
        for _ in range(4):
            time.sleep(0.15)
            budget.release()

    pacer = _Pacer()
    threading.Thread(target=refill).start()
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(_patient(write, pacer=pacer)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == ["ok"] * 4 and len(calls) > 4

    refusals = iter(range(15))  # more refusals than the ten tries there were

    def busy() -> str:
        if next(refusals, None) is not None:
            raise WharfError(429, {"detail": "too many requests"}, retry_after=0.001)
        return "ok"

    assert _patient(busy) == "ok"
    with pytest.raises(WharfError) as err:  # the deadline still ends the wait
        _patient(write, deadline=time.monotonic() + 0.05)
    assert err.value.status == 429


def test_a_restart_sends_the_staging_of_unfinished_bulk_submissions_again(market, tmp_path):
    """The embedded broker forgets a message a worker took: at start-up the staging tasks of
    a bulk submission's batches not yet staged are sent again, and its checks queued with no
    message in the broker; each batch stages nothing twice."""
    from wharf.market.bulk_submit import stage_batch
    from wharf.market.settings import Settings
    from wharf.workers.app import BULK_SUBMIT_TASK, CHECK_TASK
    from wharf.workers.recovery import requeue

    class Broker:
        def __init__(self):
            self.sent = []

        def send_task(self, name, args, **_):
            self.sent.append((name, args))

    catalog, store, admin_id = market
    members, _ = _submission(3, seed=11)
    job_id, _ = _stage_submission(catalog, store, admin_id, members, batch_size=2)
    first = stage_batch(catalog, store, job_id, 0, max_package_bytes=MAX_PACKAGE)
    assert len(first.checks) == 2  # ... and then the market stopped: batch 1 was never run

    broker = Broker()  # the embedded broker of an empty data folder: it holds no message
    done = requeue(catalog, broker, Settings(data_dir=tmp_path), market_stopped=True)
    assert sorted(done.resent) == sorted(c for c, _ in first.checks) and done.staging == [job_id]
    assert sorted(broker.sent) == sorted(
        [(CHECK_TASK, [c, lid]) for c, lid in first.checks] + [(BULK_SUBMIT_TASK, [job_id, 1])]
    )
    again = stage_batch(catalog, store, job_id, 0, max_package_bytes=MAX_PACKAGE)
    rest = stage_batch(catalog, store, job_id, 1, max_package_bytes=MAX_PACKAGE)
    assert again.checks == first.checks and len(rest.checks) == 1 and rest.staged
    with catalog.session(read_only=True) as s:
        assert s.query(Job).filter(Job.parent_id == job_id).count() == 3

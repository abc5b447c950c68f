import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from wharf.cli.main import main
from wharf.specification import load_spec, mmd2
from wharf.specification.package import write_package

from tests.oracles import gaussian_mixture


@pytest.fixture
def csv_file(tmp_path):
    X = gaussian_mixture(300, 4, seed=0)
    path = tmp_path / "data.csv"
    np.savetxt(path, X, delimiter=",", header="a,b,c,d", comments="")
    return path


def test_fit_csv_with_header_and_npy(tmp_path, csv_file, capsys):
    out = tmp_path / "a.json"
    assert (
        main(["spec", "fit", str(csv_file), "-o", str(out), "--points", "12", "--seed", "3"]) == 0
    )
    spec = load_spec(out)
    assert spec.z_.shape == (12, 4) and spec.num_points_ == 300
    assert "K=12" in capsys.readouterr().out
    npy = tmp_path / "data.npy"
    np.save(npy, np.loadtxt(csv_file, delimiter=",", skiprows=1))
    out2 = tmp_path / "b.json"
    assert (
        main(
            [
                "spec",
                "fit",
                str(npy),
                "-o",
                str(out2),
                "--points",
                "12",
                "--seed",
                "3",
                "--gamma",
                "0.1",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(load_spec(out2).z_, spec.z_)


def test_dist_prints_one_number(tmp_path, csv_file, capsys):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    main(["spec", "fit", str(csv_file), "-o", str(a), "--seed", "1"])
    main(["spec", "fit", str(csv_file), "-o", str(b), "--seed", "2"])
    capsys.readouterr()
    assert main(["spec", "dist", str(a), str(b)]) == 0
    printed = capsys.readouterr().out.strip()
    assert float(printed) == mmd2(load_spec(a), load_spec(b))


def test_bad_inputs_give_a_message_and_exit_1(tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n3,x\n")
    assert main(["spec", "fit", str(bad_csv), "-o", str(tmp_path / "o.json")]) == 1
    assert "bad.csv:3: 'x' is not a number" in capsys.readouterr().err
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2\n3\n")
    assert main(["spec", "fit", str(ragged), "-o", str(tmp_path / "o.json")]) == 1
    assert "1 columns, but the first data row has 2" in capsys.readouterr().err
    assert main(["spec", "fit", str(tmp_path / "none.csv"), "-o", "x.json"]) == 1
    assert "no such file" in capsys.readouterr().err
    spec = tmp_path / "s.json"
    spec.write_text('{"z": [[1, 2]], "beta": [1, 2], "gamma": 0.1}')
    assert main(["spec", "check", str(spec)]) == 1
    assert "beta has 2 weights but z has 1 points" in capsys.readouterr().err


def test_check_spec_semantic_and_package(tmp_path, csv_file, capsys):
    spec_path = tmp_path / "stat.json"
    main(["spec", "fit", str(csv_file), "-o", str(spec_path), "--points", "5"])
    assert main(["spec", "check", str(spec_path)]) == 0
    assert "valid RKME table specification" in capsys.readouterr().out

    semantic = {
        "Data": {"Type": "Class", "Values": ["Table"]},
        "Task": {"Type": "Class", "Values": ["Regression"]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": ["Business"]},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": "demo"},
        "Description": {"Type": "String", "Values": "a demo"},
        "Input": {"Dimension": 4, "Description": {"0": "a"}},
        "Output": {"Dimension": 1, "Description": {}},
    }
    sem_path = tmp_path / "semantic.json"
    sem_path.write_text(json.dumps(semantic))
    assert main(["spec", "check", str(sem_path)]) == 0
    semantic["Task"]["Values"] = ["Cooking"]
    sem_path.write_text(json.dumps(semantic))
    assert main(["spec", "check", str(sem_path)]) == 1
    assert "Task" in capsys.readouterr().err
    semantic["Task"]["Values"] = ["Regression"]
    semantic["Name"]["Values"] = "a name longer than the fifty characters a market takes"
    sem_path.write_text(json.dumps(semantic))
    assert main(["spec", "check", str(sem_path)]) == 1
    assert "Name may have at most 50" in capsys.readouterr().err

    files = {
        "learnware.yaml": b"model:\n  class_name: Model\nstat_specifications:\n"
        b"  - module_path: learnware.specification\n    class_name: RKMETableSpecification\n"
        b"    file_name: stat.json\n",
        "__init__.py": b"class Model: ...\n",
        "stat.json": spec_path.read_bytes(),
        "requirements.txt": b"numpy\n",
    }
    pkg = tmp_path / "pkg.zip"
    write_package(pkg, files)
    assert main(["spec", "check", str(pkg)]) == 0
    assert "valid learnware package" in capsys.readouterr().out
    files["stat.json"] = b'{"z": "oops"}'
    write_package(pkg, files)
    assert main(["spec", "check", str(pkg)]) == 1
    assert "stat.json" in capsys.readouterr().err


@pytest.mark.services
def test_console_entry_point(tmp_path, csv_file):
    exe = Path(sys.executable).parent / "wharf"
    if not exe.exists():
        pytest.skip("the project is not installed in this interpreter's environment")
    out = tmp_path / "e.json"
    res = subprocess.run([exe, "spec", "fit", csv_file, "-o", out], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([exe, "spec", "dist", out, out], capture_output=True, text=True)
    assert abs(float(res.stdout)) < 1e-12


@pytest.mark.services
def test_a_command_leaves_no_market_folders_in_its_directory(tmp_path):
    """Importing the Celery app (every ``wharf`` command does) makes no broker or result
    folders: only a market's processes do, when they first use them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    res = subprocess.run(
        [sys.executable, "-m", "wharf.cli.main", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_admin_migrate_and_bootstrap(tmp_path, monkeypatch, capsys):
    from wharf.market.catalog import Catalog, Role, repo
    from wharf.market.settings import get_settings

    monkeypatch.setenv("WHARF_DATABASE_URL", f"sqlite:///{tmp_path / 'c.db'}")
    get_settings.cache_clear()
    try:
        assert main(["admin", "migrate"]) == 0
        assert "latest schema" in capsys.readouterr().out
        assert main(["admin", "bootstrap", "--user", "root"]) == 0
        token = capsys.readouterr().out.strip()
        with Catalog(f"sqlite:///{tmp_path / 'c.db'}").session() as s:
            user = repo.authenticate(s, token)
            assert user is not None and user.name == "root" and user.role == Role.admin
            repo.create_user(s, "plain", Role.user)
        assert main(["admin", "bootstrap", "--user", "plain"]) == 1
        assert "not an admin" in capsys.readouterr().err
        assert main(["admin", "bootstrap"]) == 0
        assert main(["admin", "bootstrap", "--user", "ops", "--email", "Ops@Example.org"]) == 0
        capsys.readouterr()
        assert main(["admin", "bootstrap", "--user", "ops", "--email", "x@example.org"]) == 1
        assert "exists with the email ops@example.org" in capsys.readouterr().err
        with Catalog(f"sqlite:///{tmp_path / 'c.db'}").session() as s:
            assert repo.get_user_by_name(s, "admin").email == "admin@localhost"
            assert repo.get_user_by_email(s, "ops@example.org").name == "ops"
    finally:
        get_settings.cache_clear()


def test_admin_bootstrap_tokens_follow_the_lifetime_policy(tmp_path, monkeypatch, capsys):
    from datetime import UTC, datetime, timedelta

    from wharf.market.catalog import Catalog, repo
    from wharf.market.settings import get_settings

    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("WHARF_DATABASE_URL", url)
    monkeypatch.setenv("WHARF_TOKEN_MAX_DAYS", "30")
    get_settings.cache_clear()
    try:
        assert main(["admin", "migrate"]) == 0
        lifetimes = []
        for extra in ([], ["--expires-in-days", "7"]):
            capsys.readouterr()
            assert main(["admin", "bootstrap", *extra]) == 0
            out = capsys.readouterr()
            assert "it expires at" in out.err
            with Catalog(url).session() as s:
                _, token = repo.find_token(s, out.out.strip())
                lifetimes.append((token.expires_at - datetime.now(UTC)) / timedelta(days=1))
        assert 29.9 < lifetimes[0] <= 30 and 6.9 < lifetimes[1] <= 7
        assert main(["admin", "bootstrap", "--expires-in-days", "31"]) == 1
        assert "at most 30 days" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_admin_requeue(tmp_path, monkeypatch, capsys):
    from wharf.market.catalog import Catalog, JobKind, Role, repo
    from wharf.market.settings import get_settings

    monkeypatch.setenv("WHARF_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        catalog = Catalog.create(get_settings().catalog_url)
        with catalog.session() as s:
            owner = repo.create_user(s, "o", Role.user)
            lw = repo.create_learnware(s, owner.id, {}, "a" * 64, "packages/x.zip", 10)
            job = repo.create_job(s, JobKind.check, owner_id=owner.id, learnware_id=lw.id)
            repo.fail_job(s, job.id, "the broker was down")
        assert main(["admin", "requeue"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            f"learnwares pending with no check under way, checked again: 1 "
            f"({repo.format_id(lw.id)})"
        ]
        queued = list((tmp_path / "broker" / "queue").glob("*.check.msg"))
        assert len(queued) == 1
        assert main(["admin", "requeue"]) == 0  # the new job is queued: nothing more to do
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "nothing to send again"
        assert out[1].startswith("queued jobs whose message the broker holds, left there: 1")
    finally:
        get_settings.cache_clear()


def test_fit_and_check_images_and_texts(tmp_path, capsys):
    images = tmp_path / "images.npy"
    np.save(images, np.random.default_rng(0).random((30, 8, 8)))
    out = tmp_path / "img.json"
    args = ["--points", "4", "--steps", "1", "--nets", "1", "--net-width", "4", "--device", "cpu"]
    assert main(["spec", "fit", str(images), "-o", str(out), *args]) == 0
    spec = load_spec(out)
    assert spec.spec_type == "RKMEImageSpecification" and spec.z_.shape == (4, 1, 32, 32)
    assert "RKME image specification: K=4" in capsys.readouterr().out
    assert main(["spec", "check", str(out)]) == 0
    assert "valid RKME image specification" in capsys.readouterr().out
    assert main(["spec", "dist", str(out), str(out)]) == 0
    assert abs(float(capsys.readouterr().out)) < 1e-12

    texts = tmp_path / "reviews.txt"
    texts.write_text("The soup was far too salty.\n\nThe bread came out golden.\nLovely cake.\n")
    as_json = tmp_path / "reviews.json"
    as_json.write_text(json.dumps(["The soup was far too salty.", "The bread came out golden."]))
    for path in (texts, as_json):
        out = tmp_path / f"{path.suffix[1:]}.json"
        assert main(["spec", "fit", str(path), "-o", str(out), "--points", "1"]) == 0
        spec = load_spec(out)
        assert spec.spec_type == "RKMETextSpecification" and spec.language_ == ["en"]
    assert load_spec(tmp_path / "txt.json").num_points_ == 3  # the blank line is skipped
    table = tmp_path / "table.npy"
    np.save(table, np.ones((5, 2)))
    assert main(["spec", "fit", str(table), "-o", str(out), "--type", "image"]) == 1
    assert "images must have shape" in capsys.readouterr().err


def test_a_market_without_a_sandbox_does_not_start(tmp_path, monkeypatch, capsys):
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    assert main(["up", "--data-dir", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "error: the workers cannot check submissions here" in err
    assert "bubblewrap (bwrap) is not installed" in err
    assert not (tmp_path / "m" / "logs" / "worker0.log").exists()  # nothing was started


def _without_bwrap(tmp_path) -> dict[str, str]:
    """An environment of the default (embedded) market in ``tmp_path``, with no bwrap on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_")}
    return {**env, "WHARF_DATA_DIR": str(tmp_path), "PATH": str(tmp_path)}


@pytest.mark.services
@pytest.mark.parametrize("queues", ["check", "check,search,index"])
def test_a_check_worker_without_a_sandbox_refuses_to_start(tmp_path, queues):
    from wharf.cli.serve import worker_command

    env = _without_bwrap(tmp_path)
    done = subprocess.run(
        worker_command(queues, 1, None), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "this worker cannot take checks" in out and "bwrap) is not installed" in out, out


@pytest.mark.services
def test_a_worker_for_other_queues_starts_without_a_sandbox(tmp_path):
    from wharf.cli.serve import worker_command

    proc = subprocess.Popen(
        worker_command("search,index", 1, None),
        env=_without_bwrap(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(120, proc.kill)  # a worker that never gets ready fails the test
    watchdog.start()
    try:
        for line in proc.stdout:  # until the worker says it is ready (or exits)
            if " ready." in line:
                break
        assert proc.poll() is None, "the worker exited"
    finally:
        watchdog.cancel()
        proc.terminate()
        proc.wait(timeout=30)

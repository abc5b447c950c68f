"""Everyday mistakes through the real ``wharf`` command: each is one line on stderr saying what
to do, exit status 1, never a traceback. The market is a real API process (no workers: the
submissions here wait for a check that never comes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wharf.cli.main import main
from wharf.cli.serve import LocalMarket

from tests.test_api import SEMANTIC, zip_bytes


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("market")
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WHARF_")]:
            mp.delenv(name)  # the embedded market, wherever the tests run
        with LocalMarket(data_dir, workers=0) as m:
            yield m


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A package and its semantic spec in the current folder; the market's env unset."""
    for name in [k for k in os.environ if k.startswith("WHARF_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    Path("m.zip").write_bytes(zip_bytes({"learnware.yaml": b"model: {}\n", "x.py": b"# cli\n"}))
    Path("semantic.json").write_text(json.dumps(SEMANTIC))
    Path("data.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    return tmp_path


def one_error(capsys, argv: list[str]) -> str:
    """Run ``wharf argv``; it must fail with exactly one ``error:`` line."""
    code = main(argv)
    out = capsys.readouterr()
    assert code == 1, (code, out)
    assert out.err.endswith("\n") and out.err.count("\n") == 1, out.err
    assert out.err.startswith("error: "), out.err
    return out.err[len("error: ") : -1]


def test_mistakes_with_files(files, capsys, closed_port):
    url = ["--url", f"http://127.0.0.1:{closed_port}"]
    assert one_error(capsys, ["submit", "missing.zip", "--semantic", "semantic.json", *url]) == (
        "missing.zip: no such file"
    )
    assert one_error(capsys, ["submit", ".", "--semantic", "semantic.json", *url]) == (
        ". is a folder; give the learnware zip"
    )
    assert one_error(capsys, ["submit", "m.zip", "--semantic", "missing.json", *url]) == (
        "missing.json: no such file"
    )
    assert one_error(capsys, ["submit", "m.zip", "--semantic", "data.csv", *url]) == (
        "data.csv: not valid JSON (Expecting value at line 1 column 1)"
    )
    assert one_error(capsys, ["search", "--rkme", "missing.json", *url]) == (
        "missing.json: no such file"
    )
    assert one_error(capsys, ["search", "--data", "missing.csv", *url]) == (
        "missing.csv: no such file"
    )
    assert one_error(capsys, ["download", "00000001", "-o", "nowhere/m.zip", *url]) == (
        "cannot write nowhere/m.zip: there is no folder nowhere; create it (mkdir -p nowhere) "
        "or choose another path"
    )
    assert one_error(capsys, ["spec", "fit", "data.csv", "-o", "nowhere/spec.json"]) == (
        "cannot write nowhere/spec.json: there is no folder nowhere; create it (mkdir -p "
        "nowhere) or choose another path"
    )
    assert one_error(capsys, ["update", "00000001", *url]) == (
        "give --package, --semantic or both: what to change"
    )
    assert one_error(capsys, ["search", "--semantic", "semantic.json", "--label", "c", *url]) == (
        "--label names a column of --data's CSV; give --data"
    )
    assert one_error(capsys, ["search", "--data", "data.csv", "--label", "y", *url]) == (
        "data.csv: no column 'y' in the header (a, b, c)"
    )
    assert one_error(capsys, ["spec", "describe", "missing.csv"]) == "missing.csv: no such file"
    Path("numbers.csv").write_text("1,2\n3,4\n")
    assert one_error(capsys, ["spec", "describe", "numbers.csv"]) == (
        "numbers.csv: no header row (its first row holds numbers only); add a first row naming "
        "the columns"
    )


def test_no_market_at_the_url(files, capsys, closed_port):
    url = f"http://127.0.0.1:{closed_port}"
    for argv in (
        ["submit", "m.zip", "--semantic", "semantic.json"],
        ["search", "--semantic", "semantic.json"],
        ["jobs", "0" * 32],
        ["delete", "00000001"],
        ["download", "00000001", "-o", "x.zip"],
    ):
        assert one_error(capsys, [*argv, "--url", url]) == (
            f"no market answers at {url}: start one with `wharf up`, or set WHARF_URL"
        )
    assert one_error(capsys, ["delete", "1", "--url", f"127.0.0.1:{closed_port}"]) == (
        f"'127.0.0.1:{closed_port}' is not a market URL; give one like http://127.0.0.1:8000 "
        "(--url or WHARF_URL)"
    )


@pytest.mark.services
def test_tokens_and_the_markets_refusals(files, market, capsys):
    url = ["--url", market.url]
    auth = [*url, "--token", market.token]
    submit = ["submit", "m.zip", "--semantic", "semantic.json"]
    assert one_error(capsys, [*submit, *url]) == (
        "this needs an API token: set WHARF_TOKEN or pass --token (`wharf up` prints an admin "
        "token and keeps it in its data folder, wharf-data/admin-token)"
    )
    assert one_error(capsys, [*submit, *url, "--token", "wharf_made-up"]) == (
        "the token is unknown to this market; check WHARF_TOKEN or --token (`wharf up` prints "
        "a valid one)"
    )
    assert main([*submit, *auth]) == 0
    lid = capsys.readouterr().out.split()[1].rstrip(":")
    # The market's problem+json detail, as it is.
    assert one_error(capsys, [*submit, *auth]) == (
        f"this package was already submitted as learnware {lid}; it is pending, waiting for its "
        f"check: GET /v1/learnwares/{lid} follows it"
    )
    assert one_error(capsys, ["delete", "99999999", *auth]) == "no learnware 99999999"
    assert one_error(capsys, ["jobs", "nope", *auth]) == "no job 'nope'"
    Path("bad.json").write_text(json.dumps({**SEMANTIC, "Task": {"Type": "Class", "Values": []}}))
    assert "Task" in one_error(capsys, ["update", lid, "--semantic", "bad.json", *auth])
    # Deleted, its package is welcome again.
    assert main(["delete", lid, *auth]) == 0
    deleted = capsys.readouterr().out
    assert deleted == f"learnware {lid} deleted; its package can be submitted again\n"
    assert main([*submit, *auth]) == 0


@pytest.mark.services
def test_a_heterogeneous_search_the_market_cannot_answer(files, market, capsys):
    """A table whose columns no learnware has: 409 while the market has no map, 422 (the
    market's words) when the requirement does not describe the table it comes with."""
    auth = ["--url", market.url, "--token", market.token]
    assert main(["spec", "describe", "data.csv", "-o", "req.json"]) == 0
    capsys.readouterr()
    search = ["search", "--data", "data.csv", "--semantic", "req.json", "--hetero", *auth]
    assert one_error(capsys, search) == (
        "the market has no heterogeneous map yet, so a table whose columns differ from every "
        "learnware's cannot be searched; an admin trains one with `wharf admin hetero train`"
    )
    req = json.loads(Path("req.json").read_text())
    req["Input"] = {"Dimension": 2, "Description": {"0": "a", "1": "b"}}
    Path("req.json").write_text(json.dumps(req))
    assert one_error(capsys, search) == (
        "semantic_spec.Input.Dimension: is 2, but the RKME has 3 columns; they must match"
    )


@pytest.mark.services
def test_the_installed_command_prints_no_traceback(files, closed_port):
    exe = Path(sys.executable).parent / "wharf"
    if not exe.exists():
        pytest.skip("the project is not installed in this interpreter's environment")
    url = f"http://127.0.0.1:{closed_port}"
    done = subprocess.run(
        [exe, "download", "00000001", "-o", "x.zip"],
        env={**os.environ, "WHARF_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr == (
        f"error: no market answers at {url}: start one with `wharf up`, or set WHARF_URL\n"
    )

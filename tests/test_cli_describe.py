"""``wharf spec describe``: a search requirement whose column descriptions come from a CSV's
header, valid for the heterogeneous market, read within bounds and without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wharf.cli import describe
from wharf.cli.datafiles import MAX_HEADER_CHARS
from wharf.cli.main import main
from wharf.cli.market import print_results
from wharf.specification.hetero import check_hetero_input
from wharf.specification.hetero.columns import MAX_COLUMNS, MAX_DESCRIPTION_CHARS
from wharf.specification.rkme import TABLE_SPEC_TYPE

HEADER = "age_years,monthlyIncome,HTTPStatus,petal-length.cm,,churned\n"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("user.csv").write_text(HEADER + "31,2500,200,1.5,7,yes\n45,4100,404,2.0,3,no\n")
    return tmp_path


def test_the_header_becomes_the_requirements_descriptions(folder, capsys):
    argv = ["spec", "describe", "user.csv", "-o", "req.json", "--label", "churned"]
    assert main([*argv, "--task", "Classification", "--name", "churn"]) == 0
    err = capsys.readouterr().err
    assert "5 columns of user.csv described" in err and "'churned' left out" in err
    assert "what the column holds and its unit" in err
    assert "wharf search --data user.csv --label churned --semantic req.json" in err
    spec = json.loads(Path("req.json").read_text())
    assert spec["Input"] == {
        "Dimension": 5,
        "Description": {
            "0": "age years",
            "1": "monthly income",
            "2": "http status",
            "3": "petal length cm",
            "4": "column 4",
        },
    }
    assert spec["Data"]["Values"] == ["Table"] and spec["Task"]["Values"] == ["Classification"]
    assert spec["Name"]["Values"] == "churn"
    assert check_hetero_input(spec, TABLE_SPEC_TYPE, 5, requirement=True)[1] == "monthly income"


def test_without_an_output_file_the_json_is_printed(folder, capsys):
    Path("plain.csv").write_text("x,y\n1,2\n")
    assert main(["spec", "describe", "plain.csv"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert spec["Input"] == {"Dimension": 2, "Description": {"0": "x", "1": "y"}}
    assert spec["Task"]["Values"] == []


def test_names_become_words():
    assert describe.words("loan_amount_USD") == "loan amount usd"
    assert describe.words("numberOfRooms2") == "number of rooms2"
    assert describe.words("  __ ") == ""
    assert describe.MAX_COLUMNS == MAX_COLUMNS
    assert describe.MAX_DESCRIPTION_CHARS == MAX_DESCRIPTION_CHARS


def test_mistakes_are_one_line(folder, capsys):
    def error(argv: list[str]) -> str:
        assert main(["spec", "describe", *argv]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err[len("error: ") : -1]

    assert error(["missing.csv"]) == "missing.csv: no such file"
    Path("numbers.csv").write_text("1,2,3\n4,5,6\n")
    assert "no header row" in error(["numbers.csv"])
    Path("empty.csv").write_text("\n\n")
    assert "empty; a header row" in error(["empty.csv"])
    Path("ragged.csv").write_text("a,b,c\n1,2\n")
    assert error(["ragged.csv"]) == (
        "ragged.csv: row 2 has 2 cells, but the header names 3 columns"
    )
    Path("wide.csv").write_text(",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n")
    assert error(["wide.csv"]) == (
        f"wide.csv: the header names {MAX_COLUMNS + 1} columns; at most {MAX_COLUMNS} can be "
        "described"
    )
    assert main(["spec", "describe", "wide.csv", "--label", "c0"]) == 0  # 512 once it is out
    capsys.readouterr()
    Path("long.csv").write_text(",".join(["a" * 3000] * 400) + "\n1\n")
    assert error(["long.csv"]) == (
        f"long.csv: the header row is longer than {MAX_HEADER_CHARS} characters"
    )
    Path("cell.csv").write_text("a" * (MAX_HEADER_CHARS + 10) + "\n1\n")
    assert "not a readable CSV (field larger than field limit" in error(["cell.csv"])
    assert error(["user.csv", "--label", "price"]).startswith(
        "user.csv: no column 'price' in the header (age_years, monthlyIncome"
    )
    Path("req.json").write_text("{}")
    assert "req.json exists" in error(["user.csv", "-o", "req.json"])
    assert main(["spec", "describe", "user.csv", "-o", "req.json", "--force"]) == 0
    capsys.readouterr()
    assert "cannot write nowhere/r.json" in error(["user.csv", "-o", "nowhere/r.json"])
    assert "Name" in error(["user.csv", "--name", "n" * 200])


def test_the_command_imports_no_torch_nor_numpy(folder):
    probe = (
        "import sys; from wharf.cli.main import main; "
        "code = main(['spec', 'describe', 'user.csv', '-o', 'r.json']); "
        "print(code, 'torch' in sys.modules, 'numpy' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.split() == ["0", "False", "False"], done.stderr


def test_search_with_a_label_leaves_it_out_of_the_rkme(folder):
    from wharf.cli.spec import fit_file

    Path("labelled.csv").write_text("a,b,y\n" + "".join(f"{i},{i % 3},c{i}\n" for i in range(30)))
    spec = fit_file("labelled.csv", points=4, gamma=0.1, seed=0, device="cpu", label="y")
    assert spec.z_.shape == (4, 2)


def test_a_heterogeneous_result_says_so_above_the_table(capsys):
    single = {"id": "00000007", "name": "m", "mmd2": 0.01, "reference_score": 0.9}
    print_results({"hetero": {"map_version": 3}, "singles": [single], "mixture": None})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "heterogeneous search (map version 3)" and out[2].startswith("00000007")
    print_results({"hetero": None, "singles": [single], "mixture": None})
    assert "heterogeneous" not in capsys.readouterr().out

"""The reference ``learnware`` package (0.4.0.post1) as a client of Wharf, unchanged.

Its ``LearnwareClient`` runs in its own environment (``.venv-reference``, made by
``scripts/reference-venv``, which ``scripts/test`` runs) as a subprocess, against a real
Wharf market: the API process and Celery worker processes (``LocalMarket``). The reference
side is tests/reference/flow.py: a template-built package uploaded, checked, found, downloaded,
loaded, run, updated and deleted; and a package Wharf built loaded by the reference.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.learnwares import build_examples

pytestmark = [pytest.mark.services, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_PYTHON = ROOT / ".venv-reference" / "bin" / "python"
FLOW = Path(__file__).with_name("reference") / "flow.py"


@pytest.fixture(scope="module")
def reference_python() -> Path:
    """The reference's interpreter; a missing environment fails the test, never skips it."""
    if not REFERENCE_PYTHON.exists():
        pytest.fail(
            f"{REFERENCE_PYTHON} is missing: run scripts/reference-venv (scripts/test does) "
            "to install the reference learnware package in its own environment"
        )
    return REFERENCE_PYTHON


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "60")
        with LocalMarket(tmp_path_factory.mktemp("market"), workers=2) as m:
            yield m


def test_the_reference_client_works_with_wharf_unchanged(reference_python, market, tmp_path):
    with WharfClient(market.url, market.token) as admin:
        token = admin.create_token("reference", user="dev")["token"]
        example = build_examples(tmp_path / "examples")[0]
        sub = admin.submit(example.package, example.semantic)
        assert admin.wait(sub["job_id"], timeout=300)["state"] == "succeeded"
        assert admin.learnware(sub["learnware_id"])["status"] == "accepted"
    np.save(tmp_path / "built_x.npy", example.X_test)
    work = tmp_path / "reference"
    work.mkdir()
    run = subprocess.run(
        [
            str(reference_python),
            str(FLOW),
            f"{market.url}/api",
            "dev@localhost",
            token,
            str(work),
            sub["learnware_id"],
            str(example.package),
            str(tmp_path / "built_x.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    result = json.loads((work / "result.json").read_text())

    # The template's package (with !!python/tuple in its manifest) was accepted.
    assert result["template_has_tuple_tags"]
    assert result["verify_status"] == "SUCCESS"
    assert result["semantic_name"] == "reference template model"
    assert '"code": 53' in result["bad_login"]
    assert '"code": 61' in result["duplicate_upload"]
    # The 0.4 vocabulary is served.
    assert result["model_values"] == ["Base Model", "Fine-tuned Model", "PEFT Model", "Others"]
    assert "Text Generation" in result["task_values"]
    # Found by the reference's own RKME, and by name.
    lid = result["learnware_id"]
    assert result["stat_search_ids"][0] == lid
    assert 0 < result["stat_search_matching"][0] <= 1
    assert lid in result["semantic_search_ids"]
    # Downloaded, loaded and run by the reference, by path and by id.
    assert result["loaded_id"] == lid
    assert result["prediction_error"] < 1e-9
    assert result["by_id_prediction_error"] < 1e-9
    assert result["updated_description"] == "The same model, described again."
    assert not result["listed_after_delete"]

    # Wharf's own package, as written and as served, runs in the reference as it was trained.
    assert result["built_served_id"] == sub["learnware_id"]
    assert result["built_outputs_agree"]
    with zipfile.ZipFile(example.package) as zf:
        weights = np.load(io.BytesIO(zf.read("weights.npz")))
    scores = example.X_test @ weights["coef"].T + weights["intercept"]
    scores -= scores.max(axis=1, keepdims=True)
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    outputs = np.load(work / "built_outputs.npy")
    np.testing.assert_allclose(outputs, expected, atol=1e-9)
    assert sys.executable != str(reference_python)


def test_the_readme_snippet_runs_as_written(reference_python, market, tmp_path):
    """The README's example for the reference client, run by the reference's interpreter
    against the market (its URL put in place of wharf up's)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The reference client", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'LearnwareClient(host="http://127.0.0.1:8000/api")' in snippet
    snippet = snippet.replace("http://127.0.0.1:8000", market.url)
    (tmp_path / "wharf-data").mkdir()
    (tmp_path / "wharf-data" / "admin-token").write_text(market.token + "\n")
    (tmp_path / "snippet.py").write_text(snippet)
    run = subprocess.run(
        [str(reference_python), "snippet.py"],
        cwd=tmp_path,
        env={**os.environ, "LEARNWARE_STORAGE_PATH": str(tmp_path / "storage")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-8000:]}"
    rows = [line for line in run.stdout.splitlines() if line.startswith("[[")]
    assert rows, run.stdout[-2000:]

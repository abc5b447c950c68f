"""Submitting on the pages (FastAPI TestClient, a real SQLite catalog and local store; the
check is finished in the catalog as a worker would): the form's semantic spec, the check's
page and its state for the script, one's learnwares, edits and deletion, and what another
user may not do. The whole path with real workers is in tests/test_web_browser.py."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from wharf.market.catalog import JobKind, repo

from tests.test_web_accounts import PASSWORD, Site, post, sign_in, token_of


def package(i: int = 0) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("learnware.yaml", f"n: {i}\n")
    return buf.getvalue()


FORM = {
    "name": "Shop sales",
    "description": "weekly sales from prices",
    "data": "Table",
    "task": "Regression",
    "model": "Others",
    "library": "Scikit-learn",
    "license": "MIT",
    "input_dim": "3",
    "input_columns": "price in euros\n\nweek of the year",
    "output_dim": "1",
    "output_columns": "units sold",
    "scenario": ["Business"],
}


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    site.alice = site.user("alice")
    return site


def submit(client, data: dict, zip_bytes: bytes | None = None, path: str = "/submit"):
    """Post the submit (or edit) form as a browser does, with the page's CSRF token."""
    token = token_of(client.get(path).text)
    files = {"package": ("lw.zip", zip_bytes, "application/zip")} if zip_bytes else None
    return client.post(
        path, data={**data, "csrf_token": token}, files=files, follow_redirects=False
    )


def finish(site: Site, learnware_id: str, *, accepted: bool, log: str) -> None:
    with site.catalog.session() as s:
        lid = repo.parse_id(learnware_id)
        assert repo.claim_for_check(s, lid)
        repo.finish_check(s, lid, accepted=accepted, log=log, spec_meta=None, stat_spec_json=None)
        job = repo.latest_job_for(s, lid, JobKind.check)
        repo.start_job(s, job.id)
        repo.finish_job(s, job.id, {"accepted": accepted})


def test_the_submit_form_asks_for_signing_in(site):
    r = site.browser().get("/submit")
    assert r.status_code == 401 and "/login?next=/submit" in r.text


def test_a_submission_from_the_form_is_checked_and_its_check_followed(site):
    b = site.browser()
    sign_in(b, site.alice)
    form = b.get("/submit").text
    for value in ("Table", "Regression", "Scikit-learn", "Business", "MIT", "Base Model"):
        assert f'value="{value}"' in form
    r = submit(b, {**FORM, "scenario": ["Business", "Industry"]}, package())
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].removeprefix("/checks/")
    with site.catalog.session() as s:
        job = repo.get_job(s, job_id)
        lw = repo.get_learnware(s, job.learnware_id)
        semantic = lw.semantic_spec
        lid = repo.format_id(lw.id)
    assert semantic["Input"] == {
        "Dimension": 3,
        "Description": {"0": "price in euros", "2": "week of the year"},
    }
    assert semantic["Output"] == {"Dimension": 1, "Description": {"0": "units sold"}}
    assert semantic["Scenario"]["Values"] == ["Business", "Industry"]
    assert semantic["Name"]["Values"] == "Shop sales" and semantic["Model"]["Values"] == ["Others"]

    page = b.get(f"/checks/{job_id}")
    assert page.status_code == 200 and 'data-ended="false"' in page.text
    assert "/static/web/web.js" in page.text and "<script>" not in page.text
    state = b.get(f"/checks/{job_id}/state?wait=0.1").json()
    assert state == {"state": "queued", "stage": None, "progress": 0.0, "ended": False}

    finish(site, lid, accepted=False, log="model: predict() gave 2 columns, the spec says 1")
    assert b.get(f"/checks/{job_id}/state").json()["ended"] is True
    page = b.get(f"/checks/{job_id}").text
    assert "Rejected." in page and "predict() gave 2 columns" in page
    assert f'href="/learnwares/{lid}/edit"' in page
    mine = b.get("/mine").text
    assert "Shop sales" in mine and "rejected" in mine and f"/checks/{job_id}" in mine

    # Someone else sees neither the check nor its state.
    other = site.browser()
    sign_in(other, site.user("bob"))
    assert other.get(f"/checks/{job_id}").status_code == 404
    assert other.get(f"/checks/{job_id}/state").status_code == 404


def test_the_form_explains_what_is_wrong(site):
    b = site.browser()
    sign_in(b, site.alice)
    cases = [
        ({}, None, "Choose the learnware"),
        ({"input_dim": "two"}, package(), "whole number"),
        ({"input_dim": "1"}, package(), "3 input column descriptions for 1 columns"),
        ({"name": ""}, package(), "cannot take this learnware"),
        ({"data": "Spreadsheet"}, package(), "one of the market"),
    ]
    for change, zipped, message in cases:
        r = submit(b, {**FORM, **change}, zipped)
        assert r.status_code in (409, 422) and message in r.text, (change, r.text[-2000:])
        assert "weekly sales from prices" in r.text  # the form comes back filled in
    r = submit(b, FORM, package(1))
    assert r.status_code == 303
    r = submit(b, FORM, package(1))  # the same zip again: the API's answer, on the page
    assert r.status_code == 409 and "cannot take this learnware" in r.text


def test_owners_edit_and_delete_their_learnwares_and_no_one_else_can(site):
    b = site.browser()
    sign_in(b, site.alice)
    r = submit(b, {**FORM, "scenario": ["Business"]}, package())
    job_id = r.headers["location"].removeprefix("/checks/")
    with site.catalog.session() as s:
        lid = repo.format_id(repo.get_job(s, job_id).learnware_id)
    finish(site, lid, accepted=True, log="all checks passed")

    form = b.get(f"/learnwares/{lid}/edit").text
    assert 'value="Shop sales"' in form and "price in euros\n\nweek of the year" in form
    assert 'value="Business" checked' in form

    assert f'href="/learnwares/{lid}/edit"' in b.get(f"/learnwares/{lid}").text
    mallory = site.browser()
    sign_in(mallory, site.user("mallory"))
    assert "/edit" not in mallory.get(f"/learnwares/{lid}").text
    assert mallory.get(f"/learnwares/{lid}/edit").status_code == 404
    token = token_of(mallory.get("/account").text)
    r = mallory.post(
        f"/learnwares/{lid}/edit",
        data={**FORM, "name": "Hijacked", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 404
    r = mallory.post(f"/learnwares/{lid}/delete", data={"csrf_token": token})
    assert r.status_code == 404
    # Alice's token in Mallory's form is refused before anything else.
    alice_token = token_of(b.get("/mine").text)
    r = mallory.post(f"/learnwares/{lid}/delete", data={"csrf_token": alice_token})
    assert r.status_code == 403

    # A new name keeps it accepted; a new input width is checked again.
    r = submit(b, {**FORM, "name": "Shop sales v2"}, path=f"/learnwares/{lid}/edit")
    assert r.status_code == 303 and r.headers["location"] == f"/learnwares/{lid}"
    with site.catalog.session() as s:
        lw = repo.get_learnware(s, repo.parse_id(lid))
        assert lw.name == "Shop sales v2" and lw.status == "accepted"
    change = {"input_dim": "4", "input_columns": "a\nb\nc\nd"}
    r = submit(b, {**FORM, **change}, path=f"/learnwares/{lid}/edit")
    assert r.status_code == 303 and r.headers["location"].startswith("/checks/")
    with site.catalog.session() as s:
        assert repo.get_learnware(s, repo.parse_id(lid)).status == "pending"

    r = post(b, f"/learnwares/{lid}/delete", {}, page="/mine")
    assert r.status_code == 303
    assert "Your learnware is deleted" in b.get(r.headers["location"]).text
    with site.catalog.session() as s:
        assert repo.get_learnware(s, repo.parse_id(lid)) is None
    assert PASSWORD  # (the accounts' helpers are shared)


def test_a_check_page_needs_a_check(site):
    b = site.browser()
    sign_in(b, site.alice)
    assert b.get("/checks/nope").status_code == 404
    assert b.get("/checks/nope/state").status_code == 404
    assert re.search("no such check", b.get("/checks/" + "x" * 500).text)

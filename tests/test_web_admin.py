"""The admins' pages (FastAPI TestClient, a real SQLite catalog and the embedded broker's
queue folder): figures with their chart, users approved, disabled and promoted, and the review
of rejected and pending submissions where one is sent to be checked again."""

from __future__ import annotations

import re

import pytest
from wharf.market.catalog import JobKind, Role, UserState, repo

from tests.test_web_accounts import Site, post, sign_in, token_of
from tests.test_web_submit import FORM, finish, package, submit


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path, signup="approval")
    site.root = site.user("root", role=Role.admin)
    site.alice = site.user("alice")
    return site


def test_admin_pages_are_for_admins(site):
    anonymous = site.browser()
    assert anonymous.get("/admin").status_code == 401
    alice = site.browser()
    sign_in(alice, site.alice)
    for path in ("/admin", "/admin/users", "/admin/review"):
        assert alice.get(path).status_code == 403
    token = token_of(alice.get("/account").text)
    with site.catalog.session() as s:
        alice_id = repo.get_user_by_email(s, site.alice).id
    r = alice.post(f"/admin/users/{alice_id}", data={"action": "make-admin", "csrf_token": token})
    assert r.status_code == 403
    with site.catalog.session() as s:
        assert repo.get_user(s, alice_id).role == Role.user


def test_the_figures_page_counts_and_charts(site):
    alice = site.browser()
    sign_in(alice, site.alice)
    for i in range(3):
        assert submit(alice, FORM, package(i)).status_code == 303
    root = site.browser()
    sign_in(root, site.root)
    r = root.get("/admin")
    assert r.status_code == 200
    assert re.search(r"<th scope=\"row\">pending</th><td>3</td>", r.text)
    assert '<svg class="chart" role="img"' in r.text and "<script>" not in r.text
    # The embedded broker's queue folder holds the three checks' messages.
    assert re.search(r"<th scope=\"row\">check</th><td>3</td>", r.text)


def test_an_admin_approves_disables_and_promotes_users(site):
    b = site.browser()
    form = {"name": "dan", "email": "dan@example.org", "password": "p" * 12, "password2": "p" * 12}
    assert post(b, "/signup", form).status_code == 202
    root = site.browser()
    sign_in(root, site.root)
    page = root.get("/admin/users").text
    assert "dan@example.org" in page and 'aria-label="Approve dan"' in page
    with site.catalog.session() as s:
        dan = repo.get_user_by_email(s, "dan@example.org").id
        root_id = repo.get_user_by_email(s, site.root).id
    r = post(root, f"/admin/users/{dan}", {"action": "approve"}, page="/admin/users")
    assert r.status_code == 303 and "dan%3A+approve" in r.headers["location"]
    assert sign_in(site.browser(), "dan@example.org", "p" * 12).status_code == 303
    r = post(root, f"/admin/users/{dan}", {"action": "disable"}, page="/admin/users")
    with site.catalog.session() as s:
        assert repo.get_user(s, dan).state == UserState.disabled
    r = post(root, f"/admin/users/{dan}", {"action": "make-admin"}, page="/admin/users")
    with site.catalog.session() as s:
        assert repo.get_user(s, dan).role == Role.admin
    r = post(root, f"/admin/users/{root_id}", {"action": "disable"}, page="/admin/users")
    assert r.status_code == 409
    r = post(root, f"/admin/users/{dan}", {"action": "delete-everything"}, page="/admin/users")
    assert r.status_code == 422
    assert (
        post(root, "/admin/users/999", {"action": "enable"}, page="/admin/users").status_code == 404
    )


def test_the_review_shows_logs_and_checks_a_learnware_again(site):
    alice = site.browser()
    sign_in(alice, site.alice)
    r = submit(alice, FORM, package(7))
    job_id = r.headers["location"].removeprefix("/checks/")
    with site.catalog.session() as s:
        lid = repo.format_id(repo.get_job(s, job_id).learnware_id)
    root = site.browser()
    sign_in(root, site.root)
    page = root.get("/admin/review").text
    assert "Pending (1)" in page and 'aria-label="Check Shop sales again"' not in page  # queued

    finish(site, lid, accepted=False, log="the sandbox ran out of time")
    page = root.get("/admin/review").text
    assert "Rejected (1)" in page and "the sandbox ran out of time" in page
    r = post(root, f"/admin/learnwares/{lid}/requeue", {}, page="/admin/review")
    assert r.status_code == 303
    assert "sent to be checked again" in root.get(r.headers["location"]).text
    with site.catalog.session() as s:
        lw = repo.get_learnware(s, repo.parse_id(lid))
        job = repo.latest_job_for(s, lw.id, JobKind.check)
        assert lw.status == "pending" and job.id != job_id and job.state == "queued"
    # Checked again while its check is queued: refused.
    r = post(root, f"/admin/learnwares/{lid}/requeue", {}, page="/admin/review")
    assert r.status_code == 409
    assert post(root, "/admin/learnwares/x/requeue", {}, page="/admin/review").status_code == 404

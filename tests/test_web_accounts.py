"""Accounts on the pages (FastAPI TestClient, a real SQLite catalog): sign-up under each
policy, sign-in and out, session cookies, CSRF, session fixation, limited sign-ins that do
not tell which emails have accounts, a password change, and API tokens made and revoked on
the account page that work with /v1."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from wharf.market.catalog import Catalog, Role, UserState, repo
from wharf.market.settings import Settings

PASSWORD = "correct horse battery"


class Site:
    def __init__(self, tmp_path, **settings):
        from wharf.api.app import create_app

        limits = {"login_per_minute": 100, "login_per_account_per_minute": 20}
        settings = {"signup": "open", **limits, **settings}
        self.settings = Settings(data_dir=tmp_path, **settings)
        self.catalog = Catalog.create(self.settings.catalog_url)
        self.app = create_app(self.settings)

    def browser(self, **kw) -> TestClient:
        return TestClient(self.app, **kw)

    def user(self, name: str, *, role=Role.user, state=UserState.active) -> str:
        email = f"{name}@example.org"
        with self.catalog.session() as s:
            user = repo.create_user(s, name, role, email=email)
            repo.set_password(s, user, PASSWORD)
            user.state = state
        return email


def token_of(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def post(client: TestClient, path: str, data: dict, *, page: str | None = None):
    """Post a form as a browser does: with the CSRF token of the page it was on."""
    token = token_of(client.get(page or path).text)
    return client.post(path, data={**data, "csrf_token": token}, follow_redirects=False)


def sign_in(client: TestClient, email: str, password: str = PASSWORD):
    return post(client, "/login", {"email": email, "password": password})


def session_cookie(response) -> str:
    return re.search(r"wharf_session=([^;]*)", response.headers["set-cookie"]).group(1)


def browser_with(site: Site, secret: str) -> TestClient:
    """Another browser holding a copy of a session cookie."""
    b = site.browser()
    b.cookies.set("wharf_session", secret, domain="testserver.local")
    return b


def signed_in_as(client: TestClient) -> str | None:
    r = client.get("/account", follow_redirects=False)
    if r.status_code != 200:
        return None
    return re.search(r'<p class="meta">([^ ]+) ', r.text).group(1)


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path)


def test_open_sign_up_signs_the_new_user_in(site):
    b = site.browser()
    r = post(
        b,
        "/signup",
        {"name": "bob", "email": "Bob@Example.org", "password": PASSWORD, "password2": PASSWORD},
    )
    assert r.status_code == 303 and r.headers["location"] == "/account"
    cookie = r.headers["set-cookie"]
    assert "wharf_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    assert signed_in_as(b) == "bob"
    with site.catalog.session() as s:
        user = repo.get_user_by_email(s, "bob@example.org")
        assert user.state == UserState.active and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def test_sign_up_explains_what_is_wrong(site):
    site.user("alice")
    b = site.browser()
    cases = [
        ({"email": "not-an-email"}, "email such as"),
        ({"password": "short", "password2": "short"}, "at least 10 characters"),
        ({"password2": PASSWORD + "!"}, "differ"),
        ({"name": "alice"}, "name is taken"),
        ({"email": "ALICE@example.org"}, "already has an account"),
    ]
    for change, message in cases:
        form = {"name": "carol", "email": "carol@example.org", "password": PASSWORD}
        form |= {"password2": form["password"]} | change
        r = post(b, "/signup", form)
        assert r.status_code in (409, 422) and message in r.text, (change, r.status_code)
        assert 'value="carol' in r.text or change.get("name") == "alice"
        assert PASSWORD not in r.text  # passwords are never sent back


def test_sign_up_awaiting_approval_and_closed(tmp_path):
    site = Site(tmp_path / "a", signup="approval")
    b = site.browser()
    form = {"name": "dan", "email": "dan@example.org", "password": PASSWORD, "password2": PASSWORD}
    r = post(b, "/signup", form)
    assert r.status_code == 202 and "approves new accounts" in r.text
    assert "wharf_session" not in r.headers.get("set-cookie", "")
    r = sign_in(b, "dan@example.org")
    assert r.status_code == 403 and "awaits an admin" in r.text
    with site.catalog.session() as s:
        repo.set_state(s, repo.get_user_by_email(s, "dan@example.org"), UserState.active)
    assert sign_in(b, "dan@example.org").status_code == 303
    assert signed_in_as(b) == "dan"

    closed = Site(tmp_path / "c", signup="closed").browser()
    assert closed.get("/signup").status_code == 403
    r = closed.post("/signup", data=form)
    assert r.status_code == 403 and "create its accounts" in r.text


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(site):
    email = site.user("alice")
    b = site.browser()
    wrong = sign_in(b, email, "not the password")
    unknown = sign_in(b, "nobody@example.org", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: re.sub(r'value="[^"]*"', "", r.text)  # noqa: E731 (the typed email, token)
    assert strip(wrong) == strip(unknown)
    assert "email or the password is wrong" in wrong.text
    assert signed_in_as(b) is None


def test_sign_ins_are_limited_per_address_and_per_email(tmp_path):
    site = Site(tmp_path, login_per_minute=8, login_per_account_per_minute=3)
    email = site.user("alice")
    b = site.browser()
    for _ in range(3):
        assert sign_in(b, email, "guess the password").status_code == 401
    r = sign_in(b, email)  # the right password, but this email's budget is spent
    assert r.status_code == 429 and "Too many sign-in attempts" in r.text
    assert int(r.headers["Retry-After"]) >= 1
    # An unknown email is limited the same way (its budget says nothing of an account).
    for _ in range(3):
        assert sign_in(b, "nobody@example.org", "x" * 12).status_code == 401
    assert sign_in(b, "nobody@example.org", "x" * 12).status_code == 429
    # Then the address's own budget: other emails from it are refused too.
    assert sign_in(b, "other@example.org", "x" * 12).status_code == 429


def test_forms_without_their_csrf_token_are_refused(site):
    email = site.user("alice")
    b = site.browser()
    r = b.post("/login", data={"email": email, "password": PASSWORD})
    assert r.status_code == 403 and "expired" in r.text
    r = b.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": "x" * 32})
    assert r.status_code == 403
    assert sign_in(b, email).status_code == 303
    # Signed in, the token is the session's: the anonymous one no longer does.
    for path, data in [
        ("/account/tokens", {"name": "forged"}),
        ("/account/password", {"current": PASSWORD, "password": "p" * 12, "password2": "p" * 12}),
        ("/logout", {}),
    ]:
        assert b.post(path, data=data, follow_redirects=False).status_code == 403
        assert b.post(path, data={**data, "csrf_token": "0" * 64}).status_code == 403
    assert signed_in_as(b) == "alice"
    with site.catalog.session() as s:
        assert repo.list_tokens(s, repo.get_user_by_email(s, email).id) == []


def test_a_session_id_set_before_sign_in_is_never_used(site):
    """Session fixation: the market makes a new secret at every sign-in and ignores any it
    did not make, so a cookie planted by someone else signs no one in."""
    email = site.user("alice")
    b = site.browser()
    planted = "attacker-chosen-session-id-0123456789"
    b.cookies.set("wharf_session", planted, domain="testserver.local")
    r = sign_in(b, email)
    fresh = session_cookie(r)
    assert r.status_code == 303 and fresh and fresh != planted
    assert signed_in_as(browser_with(site, planted)) is None
    # Signing in again replaces the session: the one before stops working.
    again = session_cookie(sign_in(b, email))
    assert again != fresh
    assert signed_in_as(browser_with(site, fresh)) is None
    assert signed_in_as(browser_with(site, again)) == "alice"


def test_sign_out_ends_the_session_on_the_server(site):
    email = site.user("alice")
    b = site.browser()
    secret = session_cookie(sign_in(b, email))
    r = post(b, "/logout", {}, page="/account")
    assert r.status_code == 303 and 'wharf_session=""' in r.headers["set-cookie"]
    replay = browser_with(site, secret)  # a copy of the cookie kept from before
    assert signed_in_as(replay) is None
    r = replay.get("/account")
    assert r.status_code == 401 and "/login?next=/account" in r.text


def test_a_password_change_signs_out_every_other_browser(site):
    email = site.user("alice")
    here, there = site.browser(), site.browser()
    sign_in(here, email), sign_in(there, email)
    new = "a new long passphrase"
    r = post(
        here,
        "/account/password",
        {"current": "wrong wrong wrong", "password": new, "password2": new},
        page="/account",
    )
    assert r.status_code == 401 and "current password is wrong" in r.text
    r = post(
        here,
        "/account/password",
        {"current": PASSWORD, "password": new, "password2": new},
        page="/account",
    )
    assert r.status_code == 303
    assert signed_in_as(here) == "alice" and signed_in_as(there) is None
    assert "Your password is changed" in here.get(r.headers["location"]).text
    assert sign_in(site.browser(), email).status_code == 401
    assert sign_in(site.browser(), email, new).status_code == 303


def test_tokens_made_on_the_account_page_work_with_the_api_until_revoked(site):
    email = site.user("alice")
    b = site.browser()
    sign_in(b, email)
    r = post(b, "/account/tokens", {"name": "laptop", "days": "7"}, page="/account")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = re.search(r'id="new-token">(wharf_[^<]+)<', r.text).group(1)
    api = site.browser(headers={"Authorization": f"Bearer {token}"})
    listed = api.get("/v1/tokens").json()
    assert [t["name"] for t in listed] == ["laptop"]
    assert token not in b.get("/account").text  # shown once
    token_id = listed[0]["id"]
    # Another user cannot revoke it.
    mallory = site.browser()
    sign_in(mallory, site.user("mallory"))
    r = post(mallory, f"/account/tokens/{token_id}/revoke", {}, page="/account")
    assert r.status_code == 404
    assert api.get("/v1/tokens").status_code == 200
    r = post(b, f"/account/tokens/{token_id}/revoke", {}, page="/account")
    assert r.status_code == 303
    assert api.get("/v1/tokens").status_code == 401
    assert "revoked" in b.get("/account").text
    for days, message in [("0", "at least 1 day"), ("9999", "at most 90 days"), ("x", "number")]:
        r = post(b, "/account/tokens", {"name": "t", "days": days}, page="/account")
        assert r.status_code == 422 and message in r.text


def test_a_disabled_user_is_signed_out_and_loses_their_tokens(site):
    email = site.user("alice")
    b = site.browser()
    sign_in(b, email)
    r = post(b, "/account/tokens", {"name": "cli"}, page="/account")
    token = re.search(r'id="new-token">(wharf_[^<]+)<', r.text).group(1)
    with site.catalog.session() as s:
        repo.set_state(s, repo.get_user_by_email(s, email), UserState.disabled)
    assert signed_in_as(b) is None
    api = site.browser(headers={"Authorization": f"Bearer {token}"})
    assert api.get("/v1/tokens").status_code == 401
    r = sign_in(site.browser(), email)
    assert r.status_code == 403 and "disabled" in r.text


def test_cookies_are_secure_over_https(tmp_path):
    site = Site(tmp_path)
    email = site.user("alice")
    b = site.browser(base_url="https://testserver")
    r = sign_in(b, email)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("__Host-wharf_session=") and "Secure" in cookie
    assert signed_in_as(b) == "alice"
    forced = Site(tmp_path / "forced", cookie_secure=True)
    r = forced.browser().get("/login")
    assert "Secure" in r.headers["set-cookie"] and "__Host-wharf_csrf" in r.headers["set-cookie"]


def test_sign_in_goes_back_only_to_this_site(site):
    email = site.user("alice")
    for target, where in [
        ("/search", "/search"),
        ("//evil.example/x", "/account"),
        ("https://evil.example/", "/account"),
        ("/\\evil.example", "/account"),
    ]:
        b = site.browser()
        r = post(b, "/login", {"email": email, "password": PASSWORD, "next": target})
        assert r.headers["location"] == where, target


def test_the_header_shows_who_is_signed_in(site):
    email = site.user("root", role=Role.admin)
    b = site.browser()
    page = b.get("/").text
    assert 'href="/login"' in page and 'href="/signup"' in page
    sign_in(b, email)
    page = b.get("/").text
    assert ">root</a>" in page and 'action="/logout"' in page and 'href="/admin"' in page


def test_wharf_admin_user_commands(tmp_path, monkeypatch, capsys):
    """An admin gives themself a password for the pages, approves, disables and promotes."""
    import io

    from wharf.cli.main import main
    from wharf.market.settings import get_settings

    url = f"sqlite:///{tmp_path / 'c.db'}"
    monkeypatch.setenv("WHARF_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        catalog = Catalog.create(url)
        with catalog.session() as s:
            repo.create_user(s, "root", Role.admin, email="root@example.org")
            repo.create_user(s, "dan", email="dan@example.org").state = UserState.pending
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main(["admin", "user", "password", "root@example.org", "--stdin"]) == 0
        assert "can sign in to the pages as root@example.org" in capsys.readouterr().out
        monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
        assert main(["admin", "user", "password", "root", "--stdin"]) == 1
        assert "at least 10 characters" in capsys.readouterr().err
        assert main(["admin", "user", "list", "--pending"]) == 0
        listed = capsys.readouterr().out
        assert "dan@example.org" in listed and "root" not in listed
        assert main(["admin", "user", "approve", "dan"]) == 0
        assert main(["admin", "user", "role", "dan", "admin"]) == 0
        assert main(["admin", "user", "disable", "dan@example.org"]) == 0
        assert main(["admin", "user", "enable", "nobody"]) == 1
        assert "no user 'nobody'" in capsys.readouterr().err
        with catalog.session() as s:
            dan = repo.get_user_by_name(s, "dan")
            assert dan.state == UserState.disabled and dan.role == Role.admin
            assert repo.check_login(s, "root@example.org", PASSWORD).name == "root"
    finally:
        get_settings.cache_clear()

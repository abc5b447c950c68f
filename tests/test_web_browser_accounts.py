"""Accounts, submitting and the admin pages in a real headless Chromium against a real
running market (the API and two worker processes, checks in the sandbox): sign up, make and
revoke an API token that the SDK uses, submit an example learnware through the form and watch
its check until it is accepted, find it by its tags and download it, sign out and find the
old session dead; another user cannot edit it; an admin sends a rejected learnware to be
checked again. The security cases: a form without its CSRF token is refused, and a session id
planted before signing in is never used.

The same browser, fixtures and helpers as tests/test_web_browser.py (WHARF_SCREENSHOTS=DIR
saves each page's screenshot there).
"""

from __future__ import annotations

import io
import time
import zipfile

import httpx
import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.market.catalog import Catalog, Role, repo
from wharf.market.settings import Settings

from tests import test_web_browser as pages
from tests.test_web_browser import errors, members, navigates, shot, visit

# The same module-scoped fixtures: one browser, the examples built once for this module.
browser = pages.browser
examples = pages.examples

pytestmark = [pytest.mark.services, pytest.mark.browser, pytest.mark.slow]

PASSWORD = "a long enough passphrase"
ADMIN_PASSWORD = "the admin's passphrase"
#: The example the browser submits; the others are in the market already.
SUBMITTED = "diabetes male"


@pytest.fixture(scope="module")
def market(tmp_path_factory, examples):
    data_dir = tmp_path_factory.mktemp("market")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "30")
        mp.setenv("WHARF_SIGNUP", "open")
        with LocalMarket(data_dir, workers=2) as m, WharfClient(m.url, m.token) as admin:
            token = admin.create_token("browser", user="carol")["token"]
            with WharfClient(m.url, token) as carol:
                subs = [carol.submit(ex.package, ex.semantic) for ex in examples[:2]]
                for sub in subs:
                    carol.wait(sub["job_id"], timeout=300)
            catalog = Catalog.create(Settings(data_dir=data_dir).catalog_url, migrate=False)
            with catalog.session() as s:
                root = next(u for u in repo.list_users(s) if u.role == Role.admin)
                repo.set_password(s, root, ADMIN_PASSWORD)
                m.admin_email = root.email
            catalog.dispose()
            m.carol = token
            yield m


def by_id(driver, element_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def fill(driver, values: dict[str, str]) -> None:
    for element_id, value in values.items():
        field = by_id(driver, element_id)
        field.clear()
        field.send_keys(value)


def submit_form(driver, selector: str = "main form button[type=submit]") -> None:
    from selenium.webdriver.common.by import By

    button = driver.find_element(By.CSS_SELECTOR, selector)
    navigates(driver, button.click)


def sign_in(driver, url: str, email: str, password: str) -> None:
    visit(driver, url + "/login")
    fill(driver, {"f-email": email, "f-password": password})
    submit_form(driver)


def sign_out(driver) -> None:
    from selenium.webdriver.common.by import By

    navigates(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click)


def session_cookie(driver) -> str:
    cookie = driver.get_cookie("wharf_session")
    return cookie["value"] if cookie else ""


def signed_in_as(driver, url: str) -> str:
    from selenium.webdriver.common.by import By

    driver.get(url + "/account")
    errors(driver)  # a 401 when signed out is logged by the console: expected here
    found = driver.find_elements(By.CSS_SELECTOR, "p.meta")
    return found[0].text.split(" ")[0] if found else ""


def test_sign_up_tokens_submit_find_download_and_sign_out(browser, market, examples):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    url = market.url
    browser.delete_all_cookies()
    visit(browser, url + "/signup")
    shot(browser, "signup")
    fill(
        browser,
        {
            "f-name": "alice",
            "f-email": "alice@example.org",
            "f-password": PASSWORD,
            "f-password2": PASSWORD,
        },
    )
    submit_form(browser)
    assert browser.current_url == url + "/account" and errors(browser) == []
    cookie = browser.get_cookie("wharf_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert browser.execute_script("return document.cookie").find("wharf_session") == -1

    # A token made on the account page works with the SDK until it is revoked there.
    fill(browser, {"f-token-name": "laptop", "f-token-days": "7"})
    submit_form(browser, "form[action='/account/tokens'] button")
    token = by_id(browser, "new-token").text
    assert token.startswith("wharf_")
    shot(browser, "account")
    answer = httpx.get(f"{url}/v1/tokens", headers={"Authorization": f"Bearer {token}"})
    assert [t["name"] for t in answer.json()] == ["laptop"]
    revoke = browser.find_element(By.CSS_SELECTOR, "button[aria-label='Revoke the token laptop']")
    navigates(browser, revoke.click)
    assert "no longer works" in browser.page_source
    assert (
        httpx.get(f"{url}/v1/tokens", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )

    # Submit an example through the form, and follow its check until it is accepted.
    ex = next(e for e in examples if e.name == SUBMITTED)
    sem = ex.semantic
    visit(browser, url + "/submit")
    by_id(browser, "f-package").send_keys(str(ex.package))
    columns = sem["Input"]["Description"]
    fill(
        browser,
        {
            "f-name": sem["Name"]["Values"],
            "f-description": sem["Description"]["Values"],
            "f-input-dim": str(sem["Input"]["Dimension"]),
            "f-input-columns": "\n".join(
                columns.get(str(i), "") for i in range(sem["Input"]["Dimension"])
            ),
            "f-output-dim": str(sem["Output"]["Dimension"]),
        },
    )
    for param, key in (("data", "Data"), ("task", "Task"), ("library", "Library")):
        Select(by_id(browser, f"f-{param}")).select_by_value(sem[key]["Values"][0])
    Select(by_id(browser, "f-license")).select_by_value(sem["License"]["Values"][0])
    for scenario in sem["Scenario"]["Values"]:
        browser.find_element(By.CSS_SELECTOR, f"input[name=scenario][value='{scenario}']").click()
    shot(browser, "submit")
    submit_form(browser, "form.submit button[type=submit]")
    assert "/checks/" in browser.current_url and errors(browser) == []
    # The page reloads itself when the check ends: a read during the reload is tried again.
    WebDriverWait(browser, 300, poll_frequency=1, ignored_exceptions=(WebDriverException,)).until(
        lambda d: "Accepted." in d.page_source or "Rejected." in d.page_source
    )
    assert "Accepted." in browser.page_source, browser.find_element(By.TAG_NAME, "main").text
    assert errors(browser) == []
    shot(browser, "check")
    name = sem["Name"]["Values"]
    lid = browser.find_element(By.LINK_TEXT, name).get_attribute("href").rsplit("/", 1)[1]

    # Found by its tags, opened, downloaded.
    visit(browser, url + "/")
    Select(by_id(browser, "f-task")).select_by_visible_text("Regression")
    navigates(browser, browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click)
    navigates(browser, browser.find_element(By.LINK_TEXT, name).click)
    assert browser.current_url == f"{url}/learnwares/{lid}"
    expected = httpx.get(f"{url}/v1/learnwares/{lid}/package").content
    browser.find_element(By.PARTIAL_LINK_TEXT, "Download the package").click()
    target = browser.downloads / f"learnware-{lid}.zip"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        target.exists() and target.stat().st_size >= len(expected) - 1024
    ):
        time.sleep(0.2)
    time.sleep(0.5)
    assert members(target.read_bytes()) == members(expected)
    visit(browser, url + "/mine")
    assert name in browser.page_source and "accepted" in browser.page_source
    shot(browser, "mine")
    market.alice_learnware = lid

    # Signing out ends the session on the server: a copy of the cookie signs no one in.
    old = session_cookie(browser)
    sign_out(browser)
    assert session_cookie(browser) == ""
    browser.add_cookie({"name": "wharf_session", "value": old, "path": "/"})
    assert signed_in_as(browser, url) == ""
    assert "Sign in to see this page" in browser.page_source
    shot(browser, "login-needed")


def test_another_user_cannot_edit_it(browser, market):
    from selenium.webdriver.common.by import By

    lid = getattr(market, "alice_learnware", None)
    if lid is None:
        pytest.skip("needs the learnware submitted by the test before")
    url = market.url
    browser.delete_all_cookies()
    visit(browser, url + "/signup")
    fill(
        browser,
        {
            "f-name": "mallory",
            "f-email": "mallory@example.org",
            "f-password": PASSWORD,
            "f-password2": PASSWORD,
        },
    )
    submit_form(browser)
    browser.get(f"{url}/learnwares/{lid}/edit")
    assert "You have no learnware" in browser.find_element(By.TAG_NAME, "main").text
    errors(browser)  # the 404 is logged by the console: expected here
    # Nor deleted by posting a form of one's own pages (its CSRF token valid) to its address.
    browser.get(url + "/account")
    browser.execute_script(
        "const f = document.querySelector(\"form[action='/logout']\");"
        f"f.action = '/learnwares/{lid}/delete'; f.submit();"
    )
    time.sleep(1)
    assert "You have no learnware" in browser.find_element(By.TAG_NAME, "main").text
    assert httpx.get(f"{url}/v1/learnwares/{lid}").status_code == 200
    errors(browser)  # the 404 is logged by the console: expected here


def test_forms_without_their_csrf_token_are_refused(browser, market):
    from selenium.webdriver.common.by import By

    url = market.url
    browser.delete_all_cookies()
    sign_in(browser, url, market.admin_email, ADMIN_PASSWORD)
    assert signed_in_as(browser, url)
    # A form whose token was taken out, as a page of another site would send it.
    browser.execute_script(
        "const f = document.querySelector(\"form[action='/account/tokens']\");"
        "f.querySelector('[name=csrf_token]').remove();"
        "f.querySelector('[name=name]').value = 'forged'; f.submit();"
    )
    time.sleep(1)
    assert "This form has expired" in browser.find_element(By.TAG_NAME, "main").text
    errors(browser)  # the 403 is logged by the console: expected here
    answer = httpx.get(f"{url}/v1/tokens", headers={"Authorization": f"Bearer {market.token}"})
    assert "forged" not in [t["name"] for t in answer.json()]


def test_a_session_id_planted_before_sign_in_is_never_used(browser, market):
    url = market.url
    browser.delete_all_cookies()
    visit(browser, url + "/login")
    planted = "planted-by-someone-else-0123456789abcdef"
    browser.add_cookie({"name": "wharf_session", "value": planted, "path": "/"})
    sign_in(browser, url, market.admin_email, ADMIN_PASSWORD)
    fresh = session_cookie(browser)
    assert fresh and fresh != planted
    browser.add_cookie({"name": "wharf_session", "value": planted, "path": "/"})
    assert signed_in_as(browser, url) == ""


def test_an_admin_sends_a_rejected_learnware_to_be_checked_again(browser, market):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url = market.url
    semantic = {
        "Data": {"Type": "Class", "Values": ["Table"]},
        "Task": {"Type": "Class", "Values": ["Regression"]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": ["Business"]},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": "Broken package"},
        "Description": {"Type": "String", "Values": "no model inside"},
        "Input": {"Dimension": 2, "Description": {"0": "a", "1": "b"}},
        "Output": {"Dimension": 1, "Description": {"0": "y"}},
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("learnware.yaml", "model:\n  class_name: Missing\n")
    broken = market.data_dir.parent / "broken.zip"
    broken.write_bytes(buf.getvalue())
    with WharfClient(url, market.carol) as carol:
        sub = carol.submit(broken, semantic)
        carol.wait(sub["job_id"], timeout=300)
        assert carol.learnware(sub["learnware_id"])["status"] == "rejected"
    lid = sub["learnware_id"]

    browser.delete_all_cookies()
    sign_in(browser, url, market.admin_email, ADMIN_PASSWORD)
    visit(browser, url + "/admin")
    assert browser.find_element(By.CSS_SELECTOR, "svg.chart").size["width"] > 100
    shot(browser, "admin")
    visit(browser, url + "/admin/users")
    assert "carol" in browser.page_source
    shot(browser, "admin-users")
    visit(browser, url + "/admin/review")
    assert "Broken package" in browser.page_source
    shot(browser, "admin-review")
    again = browser.find_element(By.CSS_SELECTOR, "button[aria-label='Check Broken package again']")
    navigates(browser, again.click)
    assert "sent to be checked again" in browser.page_source and errors(browser) == []
    with WharfClient(url, market.carol) as carol:
        jobs = carol.learnware(lid)
        assert jobs["status"] in ("pending", "checking", "rejected")
    # The new check ends (rejected again: the package is still broken) and the review says so.
    WebDriverWait(browser, 300, poll_frequency=2, ignored_exceptions=(WebDriverException,)).until(
        lambda d: d.get(url + "/admin/review") or "Rejected (1)" in d.page_source
    )

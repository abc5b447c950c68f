"""The pages in a real headless Chromium against a real running market (the API and two
worker processes, the example learnwares submitted and checked in the sandbox): browse and
filter by tags, search by text and with the keyboard, open a learnware, download it, search
with a spec file and open the result; no console error (a CSP violation is one), labelled
controls, and a phone-sized screen without sideways scrolling.

The browser is the system's (Debian's ``chromium`` and ``chromium-driver``, which
``scripts/services`` installs), driven by Selenium through that chromedriver: nothing is
downloaded. A missing browser fails these tests unless ``WHARF_TEST_SKIP_BROWSER=1``.
With ``WHARF_SCREENSHOTS=DIR`` the tests save each page's screenshot there
(``scripts/screenshots`` refreshes ``docs/screenshots``).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.learnwares import build_examples
from wharf.specification import RKME
from wharf.specification.files import save_spec

pytestmark = [pytest.mark.services, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        message = f"no {CHROMIUM} and {CHROMEDRIVER}: apt-get install chromium chromium-driver"
        if os.environ.get("WHARF_TEST_SKIP_BROWSER") == "1":
            pytest.skip(message)
        pytest.fail(f"{message}\n(set WHARF_TEST_SKIP_BROWSER=1 to skip these tests)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with the driver's path: Selenium Manager never runs
    for arg in (
        "--headless=new",
        "--no-sandbox",  # tests run as root in containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
        "--lang=en-GB",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    return build_examples(tmp_path_factory.mktemp("examples"))


@pytest.fixture(scope="module")
def market(tmp_path_factory, examples):
    """A market with the example learnwares submitted by alice and accepted."""
    data_dir = tmp_path_factory.mktemp("market")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "30")
        with LocalMarket(data_dir, workers=2) as m, WharfClient(m.url, m.token) as admin:
            token = admin.create_token("browser", user="alice")["token"]
            with WharfClient(m.url, token) as alice:
                subs = [(ex, alice.submit(ex.package, ex.semantic)) for ex in examples]
                m.ids = {}
                for ex, sub in subs:
                    alice.wait(sub["job_id"], timeout=300)
                    assert alice.learnware(sub["learnware_id"])["status"] == "accepted"
                    m.ids[ex.name] = sub["learnware_id"]
            yield m


def members(package: bytes) -> dict[str, bytes]:
    """A zip's files (the market may pack a package anew for each download, with new times)."""
    with zipfile.ZipFile(io.BytesIO(package)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def errors(driver) -> list[str]:
    """The console's errors since the last call: a blocked script or style is one."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def visit(driver, url: str) -> None:
    driver.get(url)
    assert errors(driver) == []


def shot(driver, name: str, size=DESKTOP, *, mobile=False) -> None:
    """Save a screenshot of the whole page when WHARF_SCREENSHOTS names a folder."""
    folder = os.environ.get("WHARF_SCREENSHOTS")
    if not folder:
        return
    width, height = size
    full = driver.execute_script("return document.documentElement.scrollHeight")
    height = min(max(height, int(full)), 2400)
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )
    png = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / f"{name}.png").write_bytes(base64.b64decode(png))
    if mobile:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": True},
        )
    else:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def navigates(driver, action) -> None:
    """Do ``action`` (a click, a key) and wait until the page it leads to has loaded."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # The old document is marked rather than watched through an element handle: while
    # Chromium swaps documents, asking about an old node can fail with an inspector error
    # instead of the stale-element answer, and a script can find no context to run in.
    driver.execute_script("window.__wharfOldPage = true")
    action()

    def loaded(d) -> bool:
        try:
            return d.execute_script(
                "return !window.__wharfOldPage && document.readyState === 'complete'"
            )
        except WebDriverException:
            return False

    WebDriverWait(driver, 60).until(loaded)


def listed(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [a.text for a in driver.find_elements(By.CSS_SELECTOR, ".card h2 a")]


UNLABELLED = """
return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter(el => !el.hidden && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
          && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML);
"""


def test_browse_filter_by_tags_and_search_by_text(browser, market):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    visit(browser, market.url + "/")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert len(listed(browser)) == 5
    assert browser.execute_script(UNLABELLED) == []
    shot(browser, "browse")
    # Tags: the task from a list, then a scenario box, applied with the button.
    Select(browser.find_element(By.ID, "f-task")).select_by_visible_text("Regression")
    apply = browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]")
    navigates(browser, apply.click)
    assert sorted(listed(browser)) == [
        "Linear model: diabetes female",
        "Linear model: diabetes male",
    ]
    assert errors(browser) == []
    visit(browser, market.url + "/")
    browser.find_element(By.CSS_SELECTOR, "input[name=scenario][value=Education]").click()
    apply = browser.find_element(By.CSS_SELECTOR, ".filters button[type=submit]")
    navigates(browser, apply.click)
    assert len(listed(browser)) == 3 and all("digits" in n for n in listed(browser))
    # Text: name or description.
    box = browser.find_element(By.ID, "f-q")
    box.clear()
    navigates(browser, lambda: box.send_keys("5-9\n"))
    assert listed(browser) == ["Linear model: digits 5-9"]
    assert "scenario=Education" in browser.current_url  # the other filters are kept


def test_the_keyboard_reaches_everything(browser, market):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    visit(browser, market.url + "/")
    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.TAB)
    first = browser.switch_to.active_element
    assert first.get_attribute("class") == "skip" and first.is_displayed()  # shown on focus
    for _ in range(10):  # on to the search box, with Tab alone
        if browser.switch_to.active_element.get_attribute("id") == "f-q":
            break
        browser.switch_to.active_element.send_keys(Keys.TAB)
    active = browser.switch_to.active_element
    assert active.get_attribute("id") == "f-q"
    navigates(browser, lambda: active.send_keys("diabetes", Keys.ENTER))
    assert len(listed(browser)) == 2
    outline = browser.execute_script(
        "const a = document.querySelector('.card h2 a'); a.focus();"
        "return getComputedStyle(a).outlineStyle"
    )
    assert outline != "none"  # a visible focus ring


def test_open_a_learnware_and_download_it(browser, market):
    from selenium.webdriver.common.by import By

    lid = market.ids["digits 0-4"]
    visit(browser, market.url + "/?q=digits+0-4")
    navigates(browser, browser.find_element(By.LINK_TEXT, "Linear model: digits 0-4").click)
    assert browser.current_url == f"{market.url}/learnwares/{lid}"
    assert errors(browser) == []
    assert browser.find_element(By.TAG_NAME, "h1").text == "Linear model: digits 0-4"
    plot = browser.find_element(By.CSS_SELECTOR, ".specplot svg")
    assert plot.size["width"] > 200 and plot.size["height"] > 100
    assert len(plot.find_elements(By.TAG_NAME, "circle")) == 50  # K
    assert (
        "BSD-3-Clause" in browser.find_element(By.ID, "h-licence").find_element(By.XPATH, "..").text
    )
    snippet = browser.find_element(By.ID, "snippet-cli").text
    assert f"wharf download {lid}" in snippet and market.url in snippet
    copy = browser.find_element(By.CSS_SELECTOR, "button.copy[data-copy=snippet-sdk]")
    assert copy.is_displayed()  # the script ran: it shows the copy buttons
    shot(browser, "learnware")
    expected = httpx.get(f"{market.url}/v1/learnwares/{lid}/package").content
    browser.find_element(By.PARTIAL_LINK_TEXT, "Download the package").click()
    target = browser.downloads / f"learnware-{lid}.zip"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Chrome may write the file under its name as it goes
        if target.exists() and target.stat().st_size >= len(expected) - 1024:
            break
        time.sleep(0.2)
    time.sleep(0.5)
    assert target.exists(), list(browser.downloads.iterdir())
    assert members(target.read_bytes()) == members(expected)


def test_search_with_a_spec_file_and_open_the_result(browser, market, examples, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    ex = next(e for e in examples if e.name == "digits 5-9")
    spec_file = tmp_path / "my-spec.json"
    save_spec(RKME(n_points=50, seed=1, device="cpu").fit(ex.X_test), spec_file)
    visit(browser, market.url + "/search")
    assert browser.execute_script(UNLABELLED) == []
    shot(browser, "search")
    browser.find_element(By.ID, "f-spec").send_keys(str(spec_file))
    Select(browser.find_element(By.ID, "f-task")).select_by_visible_text("Classification")
    search = browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]")
    navigates(browser, search.click)
    assert "/searches/" in browser.current_url
    assert errors(browser) == []
    rows = browser.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=h-singles] tbody tr")
    assert rows, browser.page_source
    assert market.ids["digits 5-9"] in rows[0].text
    cells = rows[0].find_elements(By.TAG_NAME, "td")
    assert float(cells[2].text) >= 0 and 0 < float(cells[3].text.split()[-1]) <= 1
    shot(browser, "result")
    navigates(browser, rows[0].find_element(By.TAG_NAME, "a").click)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Linear model: digits 5-9"


def test_a_spec_computed_in_the_browser_from_a_csv_finds_the_learnware(
    browser, market, examples, tmp_path
):
    """The page fits the RKME of a CSV in the browser and sends only the spec."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ex = next(e for e in examples if e.name == "diabetes female")
    csv = tmp_path / "my-data.csv"
    header = ",".join(f"x{i}" for i in range(ex.X_test.shape[1]))
    np.savetxt(csv, ex.X_test, fmt="%.8g", delimiter=",", header=header, comments="")
    visit(browser, market.url + "/search")
    field = browser.find_element(By.ID, "f-csv")
    assert field.is_displayed() and not field.get_attribute("name")  # never a form field
    field.send_keys(str(csv))
    status = browser.find_element(By.ID, "csv-status")
    WebDriverWait(browser, 120).until(lambda d: "Computed" in status.text or ":" in status.text)
    assert f"{len(ex.X_test)} rows × 10 columns" in status.text, status.text
    search = browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]")
    navigates(browser, search.click)
    assert errors(browser) == []
    first = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=h-singles] tbody tr")
    assert market.ids["diabetes female"] in first.text


FIT_IN_PAGE = """
const [text, done] = arguments;
const script = document.createElement("script");
script.src = "/static/web/rkme.js";
script.onload = () => {
  const started = performance.now();
  const spec = self.WharfRKME.fit(self.WharfRKME.parseCSV(text), {});
  done({spec: spec, ms: performance.now() - started});
};
document.head.appendChild(script);
"""


def test_the_browser_fits_a_spec_as_well_as_wharf_spec_fit(browser, market, examples):
    """The page's fit against RKME.fit on the same rows: its MMD² to the data is as small,
    and far smaller than K rows drawn at random."""
    from wharf.specification.mmd import mmd2

    ex = next(e for e in examples if e.name == "digits 5-9")
    X = ex.X_test
    text = "\n".join(",".join(f"{v:.10g}" for v in row) for row in X)
    visit(browser, market.url + "/search")
    browser.set_script_timeout(120)
    out = browser.execute_async_script(FIT_IN_PAGE, text)
    page = RKME.from_arrays(np.array(out["spec"]["z"]), np.array(out["spec"]["beta"]), 0.1, len(X))
    python = RKME(n_points=100, seed=0, device="cpu").fit(X)

    def uniform(rows):
        return RKME.from_arrays(rows, np.full(len(rows), 1 / len(rows)), 0.1, len(rows))

    data = uniform(X)
    drawn = uniform(X[np.random.default_rng(0).choice(len(X), len(page.z_), replace=False)])
    assert len(page.z_) == len(python.z_)
    assert mmd2(page, data) <= 1.25 * mmd2(python, data)
    assert mmd2(page, data) <= 0.3 * mmd2(drawn, data)


def test_a_bad_spec_file_is_explained_on_the_form(browser, market, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "bad.json"
    bad.write_text('{"z": [[1, 2]], "beta": [1], "gamma": 0.1}')  # 2 features: none here
    visit(browser, market.url + "/search")
    browser.find_element(By.ID, "f-spec").send_keys(str(bad))
    search = browser.find_element(By.CSS_SELECTOR, "form.search button[type=submit]")
    navigates(browser, search.click)
    alert = browser.find_element(By.CSS_SELECTOR, "[role=alert]")
    assert "2 features" in alert.text
    browser.get_log("browser")  # the 422 itself is logged as a failed load


def test_pages_fit_a_phone(browser, market):
    lid = market.ids["diabetes male"]
    try:
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 1, "mobile": True},
        )
        for url, name in (("/", "phone-browse"), (f"/learnwares/{lid}", "phone-learnware")):
            visit(browser, market.url + url)
            scroll, client = browser.execute_script(
                "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]"
            )
            assert scroll <= client, f"{url} scrolls sideways on a phone"
            shot(browser, name, PHONE, mobile=True)
    finally:
        browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

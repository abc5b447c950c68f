"""The pages for people on their own (FastAPI TestClient, a real SQLite catalog and local
store, no workers): what each page shows, escaping, filters and paging, strict query
parameters, visibility, the search form and a search's result page."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from wharf.market.catalog import Catalog, JobKind, Role, repo
from wharf.market.settings import Settings
from wharf.specification import RKME
from wharf.specification.files import dumps_spec

D = 3


def semantic(name: str, *, data="Table", task="Regression", scenario=("Business",), **extra):
    spec = {
        "Data": {"Type": "Class", "Values": [data]},
        "Task": {"Type": "Class", "Values": [task]},
        "Library": {"Type": "Class", "Values": ["Scikit-learn"]},
        "Scenario": {"Type": "Tag", "Values": list(scenario)},
        "License": {"Type": "Class", "Values": ["MIT"]},
        "Name": {"Type": "String", "Values": name},
        "Description": {"Type": "String", "Values": extra.get("description", f"about {name}")},
        "Input": {"Dimension": D, "Description": {"0": "price", "2": "week"}},
        "Output": {"Dimension": 1, "Description": {"0": "sales"}},
    }
    return spec


def rkme(seed: int, k: int = 12) -> RKME:
    rng = np.random.default_rng(seed)
    return RKME.from_arrays(rng.normal(size=(k, D)), rng.dirichlet(np.ones(k)), 0.1, 200)


def package(i: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("learnware.yaml", (2024, 1, 1, 0, 0, 0)), f"n: {i}\n")
    return buf.getvalue()


class Market:
    """A catalog filled the way a check worker fills it, and a client of its app."""

    def __init__(self, tmp_path, **settings):
        from wharf.api.app import create_app

        self.settings = Settings(data_dir=tmp_path, **settings)
        self.catalog = Catalog.create(self.settings.catalog_url)
        with self.catalog.session() as s:
            self.alice = repo.create_user(s, "alice").id
            self.admin = repo.create_user(s, "root", Role.admin).id
        self.app = create_app(self.settings)
        self.client = TestClient(self.app)
        self.store = self.app.state.services.store

    def add(self, name: str, *, accepted=True, seed=0, log="all checks passed", **kw) -> str:
        data = package(seed)
        key = f"packages/{hashlib.sha256(data).hexdigest()}.zip"
        self.store.put(key, io.BytesIO(data))
        spec = rkme(seed)
        with self.catalog.session() as s:
            lw = repo.create_learnware(
                s,
                self.alice,
                semantic(name, **kw),
                hashlib.sha256(data).hexdigest(),
                key,
                len(data),
            )
            if accepted:
                assert repo.claim_for_check(s, lw.id)
                meta = {
                    "type": spec.spec_type,
                    "shape": [D],
                    "gamma": 0.1,
                    "points": len(spec.z_),
                    "num_points": 200,
                }
                repo.finish_check(
                    s,
                    lw.id,
                    accepted=True,
                    log=log,
                    spec_meta=meta,
                    stat_spec_json=dumps_spec(spec),
                )
            return repo.format_id(lw.id)


@pytest.fixture
def market(tmp_path):
    return Market(tmp_path)


def names_listed(html: str) -> list[str]:
    return re.findall(r'<h2><a href="/learnwares/\d+">([^<]*)</a></h2>', html)


def assert_page(r, status=200):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # No inline script or style: every script is a file of the market's own.
    assert re.findall(r"<script(?![^>]*\ssrc=)", r.text) == []
    assert " style=" not in r.text and "<style" not in r.text
    assert "http://" not in r.text.replace("http://testserver", "").replace(
        "http://www.w3.org/2000/svg", ""
    )  # nothing fetched from elsewhere


def test_browse_lists_accepted_learnwares_newest_first(market):
    market.add("first", seed=1)
    market.add("second", seed=2)
    market.add("still pending", seed=3, accepted=False)
    r = market.client.get("/")
    assert_page(r)
    assert names_listed(r.text) == ["second", "first"]  # pending: its owner's only
    assert "2 learnwares" in r.text
    assert re.search(r'href="/static/web/web.css\?v=[0-9a-f]{12}"', r.text)
    assert re.search(r'src="/static/web/web.js\?v=[0-9a-f]{12}"', r.text)


def test_an_empty_market_says_how_to_fill_it(market):
    r = market.client.get("/")
    assert_page(r)
    assert "no learnware yet" in r.text and "wharf submit" in r.text


def test_everything_a_developer_wrote_is_escaped(market):
    lid = market.add(
        "<script>alert(1)</script>", description='"><img src=x onerror=alert(2)>', seed=4
    )
    for url in ("/", f"/learnwares/{lid}", "/?q=%3Cscript%3E"):
        r = market.client.get(url)
        assert_page(r)
        assert "<script>alert" not in r.text and "<img src=x" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text


def test_filters_from_the_vocabulary_and_text_search(market):
    market.add("digits", seed=1, data="Image", task="Classification", scenario=("Education",))
    market.add("sales", seed=2, scenario=("Business", "Financial"))
    market.add("traffic", seed=3, scenario=("Traffic",), description="counts cars per hour")
    get = market.client.get
    assert names_listed(get("/?data=Image").text) == ["digits"]
    assert names_listed(get("/?task=Regression").text) == ["traffic", "sales"]
    assert names_listed(get("/?scenario=Financial&scenario=Traffic").text) == ["traffic", "sales"]
    assert names_listed(get("/?q=CARS").text) == ["traffic"]  # the description, any case
    assert names_listed(get("/?q=sal&data=Table").text) == ["sales"]
    r = get("/?license=GPL-3.0")
    assert "No learnware matches these filters" in r.text
    # The form shows what was chosen.
    r = get("/?data=Image&scenario=Education")
    assert '<option value="Image" selected>' in r.text
    assert 'value="Education" checked' in r.text


def test_paging_keeps_the_filters(market):
    for i in range(23):
        market.add(f"model {i:02d}", seed=10 + i)
    r = market.client.get("/?per_page=10&scenario=Business")
    assert len(names_listed(r.text)) == 10 and "page 1 of 3" in r.text
    assert 'href="/?scenario=Business&amp;per_page=10&amp;page=2"' in r.text
    r = market.client.get("/?scenario=Business&per_page=10&page=3")
    assert names_listed(r.text) == ["model 02", "model 01", "model 00"]
    assert 'rel="prev"' in r.text and 'rel="next"' not in r.text
    r = market.client.get("/?per_page=10&page=9")  # past the end: an empty page, not an error
    assert_page(r)
    assert names_listed(r.text) == []


@pytest.mark.parametrize(
    "query",
    [
        "data=Spreadsheet",
        "scenario=Business&scenario=Nowhere",
        "page=0",
        "page=-1",
        "page=two",
        "page=99999999999999",
        "per_page=7",
        "per_page=1000",
        "q=" + "x" * 101,
        "data=Table&data=Image",
        "color=red",
    ],
)
def test_bad_query_parameters_are_a_422_page(market, query):
    r = market.client.get("/?" + query)
    assert_page(r, 422)
    assert 'role="alert"' in r.text


def test_text_the_catalog_cannot_compare_is_refused(market):
    r = market.client.get("/?q=a%00b")
    assert r.status_code == 422


def test_a_learnware_page_shows_its_specification(market):
    lid = market.add("sales forecaster", seed=5)
    r = market.client.get(f"/learnwares/{lid}")
    assert_page(r)
    text = r.text
    assert "<h1>sales forecaster</h1>" in text and "about sales forecaster" in text
    for tag in ("Table", "Regression", "Scikit-learn", "Business", "MIT"):
        assert f"{tag}</li>" in text
    # Input and output descriptions, in index order.
    assert re.search(r"<td>0</td><td>price</td></tr><tr><td>2</td><td>week</td>", text)
    assert "<td>0</td><td>sales</td>" in text
    # The spec's summary and its picture: one dot per reduced point.
    assert "table RKME" in text and "<dd>12</dd>" in text and "<dd>0.1</dd>" in text
    assert text.count("<circle ") == 12
    assert 'role="img"' in text
    # Download and snippets for the three clients, with this market's URL and the id.
    assert f'href="/learnwares/{lid}/package"' in text
    assert f"wharf download {lid} -o learnware-{lid}.zip" in text
    assert f"client.download(&#34;{lid}&#34;" in text
    assert f"client.download_learnware(&#34;{lid}&#34;" in text
    assert "http://testserver/api" in text
    assert "Check log" not in text  # for its owner only


def test_the_owner_sees_the_check_log_and_an_unchecked_learnware(market):
    from wharf.api.web.session import page_user
    from wharf.market.catalog import User

    checked = market.add("mine", seed=6, log="model ran on 20 rows: <ok>")
    pending = market.add("mine too", seed=7, accepted=False)
    assert market.client.get(f"/learnwares/{pending}").status_code == 404
    with market.catalog.session() as s:
        alice = s.get(User, market.alice)
        s.expunge(alice)
    market.app.dependency_overrides[page_user] = lambda: alice  # what a login will give
    try:
        r = market.client.get(f"/learnwares/{checked}")
        assert "Check log" in r.text and "model ran on 20 rows: &lt;ok&gt;" in r.text
        r = market.client.get(f"/learnwares/{pending}")
        assert_page(r)
        assert "No statistical specification yet" in r.text and "pending" in r.text
        assert "mine too" in market.client.get("/").text
    finally:
        market.app.dependency_overrides.clear()


def test_download_sends_the_package(market):
    lid = market.add("zipped", seed=8)
    r = market.client.get(f"/learnwares/{lid}/package")
    assert r.status_code == 200 and r.content == package(8)
    assert r.headers["content-type"] == "application/zip"
    assert f"learnware-{lid}.zip" in r.headers["content-disposition"]
    pending = market.add("hidden", seed=9, accepted=False)
    assert market.client.get(f"/learnwares/{pending}/package").status_code == 404


@pytest.mark.parametrize("bad", ["0", "abc", "99999999", "-1", "1" * 30])
def test_unknown_learnwares_are_a_404_page(market, bad):
    assert_page(market.client.get(f"/learnwares/{bad}"), 404)


def test_a_private_market_shows_no_page_to_strangers(tmp_path):
    market = Market(tmp_path, public_read=False)
    lid = market.add("secret", seed=1)
    for url in ("/", f"/learnwares/{lid}", "/search", f"/learnwares/{lid}/package"):
        r = market.client.get(url)
        assert_page(r, 401)
        assert "secret" not in r.text and "private" in r.text


def test_the_search_form_says_how_to_make_a_spec(market):
    r = market.client.get("/search")
    assert_page(r)
    assert "wharf spec fit" in r.text and 'enctype="multipart/form-data"' in r.text
    assert 'name="csrf_token"' in r.text
    assert '<label for="f-spec">' in r.text and 'id="f-spec"' in r.text
    # The CSV a spec can be computed from in the browser is no form field: it is never sent.
    csv_input = re.search(r'<input id="f-csv"[^>]*>', r.text).group(0)
    assert "name=" not in csv_input


def test_a_search_from_the_form_is_queued_and_its_result_shown(market, monkeypatch):
    from wharf.api.web import pages

    monkeypatch.setattr(pages, "RESULT_WAIT_S", 0.05)
    first = market.add("near", seed=1)
    second = market.add("far", seed=2)
    spec = dumps_spec(rkme(1)).encode()
    r = market.client.post(
        "/search",
        files={"stat_spec": ("mine.json", spec, "application/json")},
        data={"data": "Table", "scenario": "Business", "csrf_token": csrf(market)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    job_id = r.headers["location"].removeprefix("/searches/")
    with market.catalog.session() as s:
        job = repo.get_job(s, job_id)
        assert job.kind == JobKind.search and job.request["top"] == pages.SEARCH_TOP
        assert job.request["semantic"]["Data"]["Values"] == ["Table"]
        assert job.request.get("spec") or job.request.get("spec_key")  # inline when small
    r = market.client.get(f"/searches/{job_id}")  # no worker here: still queued
    assert_page(r)
    assert "The search is queued" in r.text and 'http-equiv="refresh"' in r.text
    result = {
        "singles": [
            {
                "id": first,
                "name": "near",
                "mmd2": 0.0123,
                "reference_score": 0.93,
                "similarity": 0.98,
            },
            {"id": second, "name": "far", "mmd2": 0.5, "reference_score": 0.61, "similarity": 0.4},
        ],
        "mixture": {
            "ids": [first, second],
            "names": ["near", "far"],
            "weights": [0.75, 0.25],
            "mmd2": 0.01,
            "reference_score": 0.95,
            "similarity": 0.99,
        },
        "semantic_only": False,
        "stats": {},
    }
    with market.catalog.session() as s:
        assert repo.finish_job(s, job_id, result)
    r = market.client.get(f"/searches/{job_id}")
    assert_page(r)
    assert "refresh" not in r.text
    assert re.search(
        rf'href="/learnwares/{first}">near</a>.*?0\.0123.*?0\.93.*?0\.98', r.text, re.S
    )
    assert "0.750" in r.text and "0.250" in r.text  # the mixture's weights
    assert "Heterogeneous" not in r.text


def test_a_hetero_result_says_so(market):
    with market.catalog.session() as s:
        job = repo.create_job(s, JobKind.search, request={})
        repo.finish_job(s, job.id, {"singles": [], "mixture": None, "hetero": True})
    r = market.client.get(f"/searches/{job.id}")
    assert_page(r)
    assert "Heterogeneous result" in r.text and "No learnware fits this spec" in r.text


def test_a_failed_search_shows_why(market):
    with market.catalog.session() as s:
        job = repo.create_job(s, JobKind.search, request={})
        repo.fail_job(s, job.id, "the spec could not be read")
    r = market.client.get(f"/searches/{job.id}")
    assert_page(r)
    assert "The search failed: the spec could not be read" in r.text


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "x" * 300])
def test_unknown_searches_are_a_404_page(market, job_id):
    assert_page(market.client.get(f"/searches/{job_id}"), 404)


def test_a_check_job_is_not_a_search_page(market):
    with market.catalog.session() as s:
        job = repo.create_job(s, JobKind.check, request={})
    assert_page(market.client.get(f"/searches/{job.id}"), 404)


def csrf(market) -> str:
    """The CSRF token of an anonymous visitor's forms (its cookie set by the form's page)."""
    page = market.client.get("/search")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def post_search(market, spec: bytes | None, **data):
    data.setdefault("csrf_token", csrf(market))
    files = {"stat_spec": ("s.json", spec, "application/json")} if spec is not None else None
    return market.client.post("/search", files=files, data=data, follow_redirects=False)


def test_the_search_form_explains_what_is_wrong(market):
    market.add("three columns", seed=1)
    r = post_search(market, None)
    assert_page(r, 422)
    assert "Choose a spec file" in r.text
    r = post_search(market, b"{not json")
    assert_page(r, 422)
    assert "The market cannot use this spec" in r.text and "not valid JSON" in r.text
    wide = RKME.from_arrays(np.zeros((2, 5)), np.array([0.5, 0.5]), 0.1, 10)
    r = post_search(market, dumps_spec(wide).encode(), task="Regression")
    assert_page(r, 422)
    assert "5 features" in r.text and '<option value="Regression" selected>' in r.text
    r = post_search(market, dumps_spec(rkme(1)).encode(), data="Spreadsheet")
    assert_page(r, 422)
    r = post_search(market, dumps_spec(rkme(1)).encode(), extra="1")
    assert_page(r, 422)
    assert "Unknown form field" in r.text


def test_a_spec_over_the_limit_is_refused_before_it_is_read(tmp_path):
    market = Market(tmp_path, max_spec_bytes=1000)
    r = post_search(market, b" " * 5000 + dumps_spec(rkme(1)).encode())
    assert r.status_code == 413


def test_the_static_assets_are_served(market):
    for name in ("web.css", "web.js", "icon.svg", "rkme.js", "rkme-worker.js"):
        r = market.client.get(f"/static/web/{name}")
        assert r.status_code == 200 and "max-age" in r.headers["cache-control"]
    assert market.client.get("/static/web/../pages.py").status_code == 404


def test_the_picture_gives_each_point_an_area_proportional_to_its_weight():
    from wharf.api.web import specplot

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 6))
    beta = rng.dirichlet(np.ones(40))
    pic = specplot.picture(z, beta)
    assert pic.points == pic.drawn == 40 and pic.features == 6
    radii = sorted(r for _, _, r in pic.svg_dots)
    assert radii[-1] == specplot.MAX_RADIUS
    heavy, light = np.sort(beta)[-1], np.sort(beta)[-2]
    assert radii[-2] == pytest.approx(specplot.MAX_RADIUS * np.sqrt(light / heavy), abs=0.01)
    for x, y, _ in pic.svg_dots:
        assert 0 <= x <= specplot.WIDTH and 0 <= y <= specplot.HEIGHT
    assert 0 < pic.explained[1] <= pic.explained[0] <= 1
    # Points along one direction project onto one axis, which then holds all the variance.
    line = np.outer(np.linspace(-1, 1, 10), rng.normal(size=6))
    assert specplot.picture(line, np.full(10, 0.1)).explained[0] == pytest.approx(1.0)
    # One feature, one point, zero weights: still a picture.
    assert specplot.picture(np.arange(5.0)[:, None], np.ones(5)).drawn == 5
    assert specplot.picture(np.zeros((1, 3)), np.ones(1)).drawn == 1
    assert specplot.picture(np.ones((3, 2)), np.zeros(3)).drawn == 3


def test_json_in_the_requirement_is_built_from_the_chosen_tags():
    from starlette.datastructures import FormData
    from wharf.api.web.pages import _requirement

    text, chosen = _requirement(FormData([("data", "Image"), ("scenario", "Nature")]))
    assert json.loads(text) == {
        "Data": {"Type": "Class", "Values": ["Image"]},
        "Scenario": {"Type": "Tag", "Values": ["Nature"]},
    }
    assert chosen == {"data": "Image", "scenario": "Nature"}
    assert _requirement(FormData([])) == (None, {})


def contrast(foreground: str, background: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    hi, lo = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_text_colours_have_enough_contrast():
    """Every text colour of the style sheet on the backgrounds it is used on: at least 4.5:1
    (WCAG AA for body text)."""
    from pathlib import Path

    from wharf.api import web

    css = (Path(web.__file__).parent / "static" / "web.css").read_text()
    var = dict(re.findall(r"--([a-z-]+):\s*(#[0-9a-fA-F]{6})", css))
    pairs = [
        (var["ink"], var["bg"]),
        (var["ink"], var["panel"]),
        (var["muted"], var["bg"]),
        (var["muted"], var["panel"]),
        (var["accent"], var["bg"]),
        (var["accent"], var["panel"]),
        (var["accent-ink"], var["accent"]),  # buttons
        ("#ffffff", "#0d3b6e"),  # the header
        (var["ok"], var["bg"]),
        (var["warn"], var["bg"]),
        (var["bad"], var["bg"]),
        ("#133a63", "#e4ecf5"),  # tags
        ("#344217", "#eef2e6"),
        ("#5b2e0b", "#f5ece4"),
    ]
    for foreground, background in pairs:
        assert foreground.lower() in css.lower() or foreground in var.values()
        assert contrast(foreground, background) >= 4.5, (foreground, background)


def test_a_form_that_is_not_one_is_a_page_too(market):
    r = market.client.post(
        "/search",
        content=b"--x\r\nbroken",
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code in (400, 403, 422)  # 403: what parses of it has no CSRF token
    assert r.headers["content-type"].startswith("text/html")
    files = [("stat_spec", (f"{i}.json", b"{}", "application/json")) for i in range(3)]
    r = market.client.post("/search", files=files)
    assert_page(r, 400)


def test_an_image_learnware_page_pictures_its_spec(market):
    """Image specs' points are images: the picture projects them flattened."""
    from wharf.specification import RKMEImage

    rng = np.random.default_rng(3)
    spec = RKMEImage.from_arrays(rng.normal(size=(6, 3, 32, 32)), np.full(6, 1 / 6), 40)
    data = package(99)
    key = f"packages/{hashlib.sha256(data).hexdigest()}.zip"
    market.store.put(key, io.BytesIO(data))
    with market.catalog.session() as s:
        lw = repo.create_learnware(
            s,
            market.alice,
            semantic("digit pictures", data="Image", task="Classification"),
            hashlib.sha256(data).hexdigest(),
            key,
            len(data),
        )
        assert repo.claim_for_check(s, lw.id)
        meta = {
            "type": spec.spec_type,
            "shape": [3, 32, 32],
            "gamma": 1.0,
            "points": 6,
            "num_points": 40,
        }
        repo.finish_check(
            s, lw.id, accepted=True, log="ok", spec_meta=meta, stat_spec_json=dumps_spec(spec)
        )
        lid = repo.format_id(lw.id)
    r = market.client.get(f"/learnwares/{lid}")
    assert_page(r)
    assert "image RKME" in r.text and "3×32×32" in r.text
    assert r.text.count("<circle ") == 6
    r = market.client.get("/?data=Image")
    assert "image RKME · K = 6 · points of 3×32×32" in r.text

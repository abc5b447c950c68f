"""Hostile statistical specs against a real market (API, worker processes, sandboxed checks):
huge reduced sets, weights off the simplex, absurd coordinates and γ, nesting. Each case
asserts the market's exact answer, and the module ends with an honest submission and search
that still work. The kernel code's memory is measured in a child process."""

from __future__ import annotations

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
from wharf.specification import RKME

pytestmark = [pytest.mark.adversarial, pytest.mark.slow, pytest.mark.services]

K_HUGE = 16_000  # ~2–4 GB of kernel matrix in one piece


def _spec(z, beta, gamma=0.1) -> dict:
    return {
        "z": np.asarray(z).tolist(),
        "beta": np.asarray(beta).tolist(),
        "gamma": gamma,
        "num_points": 100,
        "type": "RKMETableSpecification",
    }


def _huge(d: int) -> dict:
    rng = np.random.default_rng(0)
    return _spec(rng.normal(size=(K_HUGE, d)), np.full(K_HUGE, 1 / K_HUGE))


def _near_null(d: int) -> dict:
    """Weights that cancel: an embedding of almost nothing, closest to every unrelated user."""
    z = np.zeros((2, d))
    z[1, 0] = 1e-3
    return _spec(z, [1.0, -1.0])


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile-specs")
    examples = build_examples(tmp / "examples")
    with pytest.MonkeyPatch.context() as mp:
        for name in [k for k in os.environ if k.startswith("WHARF_")]:
            mp.delenv(name)
        mp.setenv("WHARF_RATE_LIMIT_ENABLED", "false")
        with LocalMarket(tmp / "m", workers=1) as m, WharfClient(m.url, m.token) as c:
            honest = examples[0]
            sub = c.submit(honest.package, honest.semantic)
            assert c.wait(sub["job_id"], timeout=240)["state"] == "succeeded"
            assert c.learnware(sub["learnware_id"])["status"] == "accepted"
            c.examples, c.tmp, c.honest_id = examples, tmp, sub["learnware_id"]
            yield c


def _with_spec(client, spec: dict, name: str) -> Path:
    """The first example's package with its stat spec replaced by ``spec``."""
    ex = client.examples[0]
    out = client.tmp / f"{name}.zip"
    with zipfile.ZipFile(ex.package) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".json") and b'"beta"' in data:
                data = json.dumps(spec).encode()
            dst.writestr(info, data)
    return out


def _dim(client) -> int:
    return client.examples[0].semantic["Input"]["Dimension"]


SEARCH_CASES = {
    "huge K": (lambda d: _huge(2), "16000 points, over this market's limit of 2000"),
    "negative beta": (_near_null, "beta must be non-negative weights summing to 1"),
    "beta not summing to 1": (
        lambda d: _spec(np.zeros((2, d)), [0.2, 0.2]),
        "probability simplex",
    ),
    "coordinates of 1e300": (
        lambda d: _spec(np.full((2, d), 1e300), [0.5, 0.5]),
        "over this market's limit of 1e+06",
    ),
    "gamma 1e-300": (
        lambda d: _spec(np.zeros((2, d)), [0.5, 0.5], gamma=1e-300),
        "gamma is 1e-300, outside the range",
    ),
    "points × features": (
        lambda d: _spec(np.zeros((1000, 2000)), np.full(1000, 1e-3)),
        "over 1310720 numbers",
    ),
}


@pytest.mark.parametrize("case", list(SEARCH_CASES))
def test_a_hostile_search_spec_gets_422_naming_the_rule(market, case):
    build, message = SEARCH_CASES[case]
    body = json.dumps(build(_dim(market))).encode()
    r = market.http.post("/v1/searches", files={"stat_spec": ("s.json", body)})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert message in r.json()["detail"], r.json()


def test_a_deeply_nested_search_spec_gets_422(market):
    body = ('{"z": ' + "[" * 200_000 + "]" * 200_000 + ', "beta": [1], "gamma": 0.1}').encode()
    r = market.http.post("/v1/searches", files={"stat_spec": ("s.json", body)})
    assert r.status_code == 422, r.text
    assert "nested too deeply" in r.json()["detail"]


CHECK_CASES = {
    "huge K": (lambda d: _huge(d), "over this market's limit of 2000"),
    "negative beta": (_near_null, "beta must be non-negative weights summing to 1"),
    "coordinates of 1e300": (
        lambda d: _spec(np.full((2, d), 1e300), [0.5, 0.5]),
        "over this market's limit of 1e+06",
    ),
    "gamma 1e300": (
        lambda d: _spec(np.zeros((2, d)), [0.5, 0.5], gamma=1e300),
        "outside the range",
    ),
}


@pytest.mark.parametrize("case", list(CHECK_CASES))
def test_a_package_with_a_hostile_spec_is_rejected_by_its_check(market, case):
    build, message = CHECK_CASES[case]
    ex = market.examples[0]
    package = _with_spec(market, build(_dim(market)), case.replace(" ", "-"))
    sub = market.submit(package, {**ex.semantic, "Name": {"Type": "String", "Values": case}})
    assert market.wait(sub["job_id"], timeout=240)["state"] == "succeeded"
    assert market.learnware(sub["learnware_id"])["status"] == "rejected"
    log = market.http.get(f"/v1/learnwares/{sub['learnware_id']}/log").text
    assert message in log, log


def test_an_honest_search_still_finds_the_honest_learnware(market):
    ex = market.examples[0]
    spec = RKME(n_points=20, seed=1).fit(ex.X_test)
    job = market.wait(market.start_search(spec=spec, top=3), timeout=120)
    assert job["state"] == "succeeded", job
    assert job["result"]["singles"][0]["id"] == market.honest_id


MEMORY_PROBE = """
import resource, sys
import numpy as np
from wharf.specification import RKME
from wharf.specification.mmd import SpecBank, inner_product
from wharf.market.scoring import user_self_term, inner_product_matrix
from wharf.market.index.packed import PackedSpecs

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

rng = np.random.default_rng(0)
k = int(sys.argv[1])
big = RKME.from_arrays(rng.normal(size=(k, 2)), np.full(k, 1 / k), 0.1, k)
small = RKME.from_arrays(rng.normal(size=(5, 2)), np.full(5, 0.2), 0.1, 5)
before = peak()
bank = SpecBank(0.1, 2)
bank.add([big, small])
bank.mmd2(big)
inner_product(big, big)
user_self_term(big)
inner_product_matrix([big, small], 0.1)
packed = PackedSpecs(0.1, 2)
packed.add([1, 2], [big, small])
packed.mmd2(big, [1, 2])
print(peak() - before)
"""


def test_kernel_memory_does_not_grow_with_k(tmp_path):
    """Every exact kernel computation a check or a search makes on a K = 16,000 spec (the
    bank, the packed index, the user's self term, the mixture's Gram matrix) stays within a
    few hundred MB; in one piece the K × K matrix alone is 2 GB."""
    probe = tmp_path / "probe.py"
    probe.write_text(MEMORY_PROBE)
    out = subprocess.run(
        [sys.executable, str(probe), str(K_HUGE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    assert grown < 400 * 1024 * 1024, f"{grown / 2**20:.0f} MiB"

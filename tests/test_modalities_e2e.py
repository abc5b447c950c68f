"""Image and text learnwares through a whole market: the API and real worker processes on the
embedded default. Each learnware passes the sandboxed check on probes of its kind, and a user
with held-out data of one learnware finds it first (text users only among learnwares of
their language)."""

from __future__ import annotations

import pytest
from wharf.cli.serve import LocalMarket
from wharf.client import WharfClient
from wharf.examples.modalities import build_image_examples, build_text_examples, user_spec

# Real markets: their API and worker processes (and, here, the services they run on).
pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("modalities")
    return build_image_examples(out) + build_text_examples(out)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WHARF_MODEL_TIME_LIMIT_S", "20")
        with (
            LocalMarket(tmp_path_factory.mktemp("market"), workers=2) as market,
            WharfClient(market.url, market.token) as c,
        ):
            yield c


@pytest.fixture(scope="module")
def accepted(client, examples):
    subs = [(ex, client.submit(ex.package, ex.semantic)) for ex in examples]
    ids = {}
    for ex, sub in subs:
        client.wait(sub["job_id"], timeout=180)
        lw = client.learnware(sub["learnware_id"])
        assert lw["status"] == "accepted", client.log(sub["learnware_id"])
        ids[ex.name] = sub["learnware_id"]
    return ids


def test_image_and_text_learnwares_are_accepted_with_their_specs(client, accepted):
    image = client.learnware(accepted["digits 3-5"])
    assert image["spec"]["type"] == "RKMEImageSpecification"
    assert image["spec"]["shape"] == [1, 32, 32]
    text = client.learnware(accepted["cooking reviews"])
    assert text["spec"]["type"] == "RKMETextSpecification" and text["spec"]["shape"] == [384]
    log = client.log(accepted["digits 3-5"])
    assert "random images of integers in [0, 255)" in log
    assert "list of str" in client.log(accepted["cooking reviews"])


def test_each_user_finds_the_learnware_of_their_data(client, accepted, examples):
    for ex in examples:
        spec = user_spec(ex)
        result = client.search(spec=spec, top=3)
        assert result["singles"][0]["id"] == accepted[ex.name], (ex.name, result)
        assert result["singles"][0]["mmd2"] >= 0
        kinds = {"RKMEImageSpecification": "digits", "RKMETextSpecification": "reviews"}
        found = {s["name"] for s in result["singles"]}
        assert all(("Digit" in n) == (kinds[spec.spec_type] == "digits") for n in found)
        if spec.spec_type == "RKMETextSpecification":
            french = accepted["recettes (French cooking)"]
            ids = {s["id"] for s in result["singles"]}
            assert (french in ids) == (spec.language_ == ["fr"])
            dropped = result["stats"]["dropped_language"]
            assert dropped == (3 if spec.language_ == ["fr"] else 1)

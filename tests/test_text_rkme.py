"""Tests for text specifications: offline sentence embeddings, language tags, the text RKME
and its JSON format."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from wharf.specification import SpecificationError, dumps_spec, loads_spec
from wharf.specification.sentences import EMBEDDING_DIM, detect_languages, embed_texts
from wharf.specification.text import RKMEText, languages_cover

SPORTS = [
    "The striker scored twice in the last ten minutes of the match.",
    "The team won the championship after a tense penalty shootout.",
    "Our coach wants more pressing in midfield next season.",
    "The marathon runners crossed the finish line in record time.",
]
COOKING = [
    "Whisk the eggs with the sugar until the mixture turns pale.",
    "Simmer the tomato sauce for twenty minutes with fresh basil.",
    "Bake the bread at two hundred degrees until the crust is golden.",
    "Season the soup with salt, pepper and a squeeze of lemon.",
]
FRENCH = [
    "Le boulanger prépare le pain chaque matin avec beaucoup de soin.",
    "Nous mangeons une soupe chaude pendant les longues soirées d'hiver.",
]


@pytest.mark.services
def test_embeddings_load_offline_and_are_deterministic():
    """In a fresh process with the hub switched off and every network connection refused,
    the model loads from the installed package and embeds."""
    code = f"""
import json, socket, sys
def refuse(*args, **kwargs):
    raise OSError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
from wharf.specification.sentences import embed_texts
a = embed_texts({SPORTS[:2]!r}, device="cpu")
b = embed_texts({SPORTS[:2]!r}, device="cpu")
assert (a == b).all()
print(json.dumps(a.tolist()))
"""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    offline = np.array(json.loads(res.stdout.strip().splitlines()[-1]))
    here = embed_texts(SPORTS[:2], device="cpu")
    assert offline.shape == (2, EMBEDDING_DIM)
    np.testing.assert_allclose(here, offline, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(here, axis=1), 1.0, atol=1e-6)


def test_embeddings_put_topics_apart():
    e = embed_texts(SPORTS + COOKING, device="cpu")
    sims = e @ e.T
    within = (sims[:4, :4].sum() - 4) / 12
    across = sims[:4, 4:].mean()
    assert within > across + 0.1


def test_language_tags_are_the_reference_codes_and_repeatable():
    assert detect_languages(SPORTS) == ["en"]
    assert detect_languages(FRENCH) == ["fr"]
    assert detect_languages(FRENCH) == detect_languages(FRENCH)
    assert detect_languages(["1234 5678", "!!!"]) == []
    with pytest.raises(SpecificationError, match="list of strings"):
        detect_languages("a single string")
    with pytest.raises(SpecificationError, match="empty"):
        embed_texts([])


def test_text_rkme_fit_and_round_trip():
    spec = RKMEText(n_points=3, seed=0, device="cpu").fit(SPORTS + COOKING)
    assert spec.spec_type == "RKMETextSpecification"
    assert spec.z_.shape == (3, EMBEDDING_DIM) and spec.gamma == 0.1
    assert spec.language_ == ["en"] and spec.num_points_ == 8
    assert spec.beta_.sum() == pytest.approx(1.0, abs=1e-12)
    again = RKMEText(n_points=3, seed=0, device="cpu").fit(SPORTS + COOKING)
    np.testing.assert_array_equal(again.z_, spec.z_)
    back = loads_spec(dumps_spec(spec))
    assert isinstance(back, RKMEText) and back.language_ == ["en"]
    np.testing.assert_array_equal(back.z_, spec.z_)
    with pytest.raises(SpecificationError, match="list of strings"):
        RKMEText().fit([1, 2, 3])


def test_reads_a_reference_text_spec_and_writes_its_format():
    rng = np.random.default_rng(0)
    reference = {
        "z": rng.normal(size=(2, 384)).tolist(),
        "beta": [0.4, 0.6],
        "gamma": 0.1,
        "num_points": 12,
        "type": "RKMETextSpecification",
        "language": ["en", "fr"],
    }
    spec = loads_spec(json.dumps(reference, separators=(",", ":")))
    assert isinstance(spec, RKMEText)
    assert spec.language_ == ["en", "fr"] and spec.num_points_ == 12
    assert dumps_spec(spec) == json.dumps(reference, separators=(",", ":"))  # byte for byte
    legacy = dict(reference)
    del legacy["language"]
    assert loads_spec(json.dumps(legacy)).language_ == []
    for bad in ("en", [1], [""]):
        with pytest.raises(SpecificationError, match="language"):
            loads_spec(json.dumps({**reference, "language": bad}))


def test_language_filter_is_the_reference_subset_rule():
    def spec(langs):
        return RKMEText.from_arrays(np.zeros((1, 2)), [1.0], 0.1, 1, langs)

    assert languages_cover(spec(["en", "fr"]), spec(["fr"]))
    assert languages_cover(spec(["en"]), spec([]))
    assert not languages_cover(spec(["en"]), spec(["en", "fr"]))
    assert not languages_cover(spec([]), spec(["en"]))

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from wharf.specification import (
    RKME,
    SpecificationError,
    dumps_spec,
    load_spec,
    loads_spec,
    save_spec,
)
from wharf.specification.limits import SpecLimits, check_self_inner_product

# Written by hand from the documented reference format (compact separators, key order).
REFERENCE_FILE = (
    '{"z":[[0.5,-1.25,3.0],[1e-05,2.5,-0.125]],"beta":[0.75,0.25],"gamma":0.1,'
    '"num_points":1257,"type":"RKMETableSpecification"}'
)


def test_reads_the_reference_format():
    spec = loads_spec(REFERENCE_FILE)
    np.testing.assert_array_equal(spec.z_, [[0.5, -1.25, 3.0], [1e-05, 2.5, -0.125]])
    np.testing.assert_array_equal(spec.beta_, [0.75, 0.25])
    assert spec.gamma == 0.1 and spec.num_points_ == 1257


def test_writes_the_reference_format_byte_for_byte():
    assert dumps_spec(loads_spec(REFERENCE_FILE)) == REFERENCE_FILE


@pytest.mark.parametrize(
    "extra",
    [
        {"type": "RKMEStatSpecification"},
        {"type": None},
        {"cuda_idx": 0, "device": "cuda:0"},
    ],
)
def test_reads_legacy_files(extra):
    data = json.loads(REFERENCE_FILE)
    if extra.get("type", "") is None:
        del data["type"]
        extra = {}
    data.update(extra)
    spec = loads_spec(json.dumps(data))
    assert spec.num_points_ == 1257
    assert json.loads(dumps_spec(spec))["type"] == "RKMETableSpecification"


def _with(**changes):
    data = json.loads(REFERENCE_FILE)
    for k, v in changes.items():
        if v is ...:
            del data[k]
        else:
            data[k] = v
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON: .* line 1 column 2"),
        ("[1, 2]", "must be a JSON object"),
        (_with(z=...), "missing required key.*z"),
        (_with(beta=..., gamma=...), "missing required key.*beta, gamma"),
        (_with(z=[[1.0, 2.0, 3.0], [1.0]]), "ragged"),
        (_with(z=[]), "z is empty"),
        (_with(z=[[]] * 2), "no numbers"),
        (_with(z=[1.0, 2.0]), "list of points"),
        (_with(z=[[1.0, "a", 3.0], [1.0, 2.0, 3.0]]), "ragged or holds non-numbers"),
        (REFERENCE_FILE.replace("0.5,", "NaN,"), "NaN"),
        (REFERENCE_FILE.replace("0.5,", "Infinity,"), "Infinity"),
        (_with(gamma=0), "gamma must be > 0"),
        (_with(gamma=-0.1), "gamma must be > 0"),
        (_with(gamma="0.1"), "gamma must be a finite number"),
        (_with(beta=[1.0]), "beta has 1 weights but z has 2 points"),
        (_with(beta=[[0.5], [0.5]]), "flat list"),
        (_with(num_points=-3), "num_points"),
        (_with(type="HeteroMapTableSpecification"), "unsupported spec type"),
        (_with(type="RKMEImageSpecification"), "z of an image spec must be K images"),
        (b"\xff\xfe", "UTF-8|not valid JSON"),
    ],
)
def test_malformed_files_are_refused_with_the_reason(text, message):
    with pytest.raises(SpecificationError, match=message):
        loads_spec(text)


def test_absurd_sizes_are_refused_before_parsing():
    limits = SpecLimits(max_points=10, max_numbers=100)
    with pytest.raises(SpecificationError, match="over this market's limit of 10"):
        loads_spec(_with(z=[[0.0]] * 11, beta=[0.1] * 11), limits)
    with pytest.raises(SpecificationError, match="over 100 numbers"):
        loads_spec(_with(z=[[0.0] * 20] * 6, beta=[0.1] * 6), limits)
    image = {"type": "RKMEImageSpecification", "z": [[[[0.0] * 32] * 32]] * 3, "beta": [1 / 3] * 3}
    with pytest.raises(SpecificationError, match="limit of 2"):
        loads_spec(json.dumps(image), SpecLimits(max_image_points=2))


MARKET = SpecLimits.for_market(
    max_points=100, max_image_points=10, max_numbers=10_000, max_abs_value=1e6,
    gamma_range=(1e-6, 1e6),
)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"beta": [1.5, -0.5]}, "simplex.*min -0.5"),  # cancels the embedding to nothing
        ({"beta": [0.3, 0.3]}, "simplex.*sum 0.6"),
        ({"z": [[1e300, 0.0, 0.0], [0.0, 0.0, 0.0]]}, "absolute value 1e\\+300"),
        ({"gamma": 1e-300}, "gamma is 1e-300, outside"),
        ({"gamma": 1e300}, "outside the range"),
    ],
)
def test_a_market_refuses_specs_that_are_not_embeddings(change, message):
    assert loads_spec(_with(**change)).gamma > 0  # a reader with no limits takes them
    with pytest.raises(SpecificationError, match=message):
        loads_spec(_with(**change), MARKET)
    loads_spec(_with(beta=[1 - 1e-9, 1e-9 + 1e-12]), MARKET)  # rounding is not refused


def test_deeply_nested_json_is_a_clear_error():
    deep = '{"z": ' + "[" * 100_000 + "]" * 100_000 + ', "beta": [1], "gamma": 0.1}'
    with pytest.raises(SpecificationError, match="nested too deeply"):
        loads_spec(deep)
    forty = '{"z": ' + "[" * 40 + "1" + "]" * 40 + ', "beta": [1], "gamma": 0.1}'
    with pytest.raises(SpecificationError, match=r"dimensions|ragged"):
        loads_spec(forty)


def test_the_self_inner_product_must_lie_where_an_embedding_can():
    check_self_inner_product(0.5, [0.5, 0.5], gaussian=True)
    with pytest.raises(SpecificationError, match="outside"):
        check_self_inner_product(0.1, [0.5, 0.5], gaussian=True)  # below Σβ² = 0.5
    with pytest.raises(SpecificationError, match="outside"):
        check_self_inner_product(1.5, [0.5, 0.5], gaussian=True)
    with pytest.raises(SpecificationError, match="finite positive"):
        check_self_inner_product(-1e-3, [0.5, 0.5], gaussian=False)
    check_self_inner_product(3.0, [0.5, 0.5], gaussian=False)  # NNGP values are not bounded by 1


def test_save_and_load_file(tmp_path):
    spec = RKME(n_points=5, device="cpu").fit(np.random.default_rng(0).normal(size=(50, 3)))
    path = tmp_path / "spec.json"
    save_spec(spec, path)
    back = load_spec(path)
    np.testing.assert_array_equal(back.z_, spec.z_)
    np.testing.assert_array_equal(back.beta_, spec.beta_)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(SpecificationError, match="does not exist"):
        load_spec(tmp_path / "missing.json")


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            arrays(
                np.float64, (k, 2, 2), elements=st.floats(allow_nan=False, allow_infinity=False)
            ),
            arrays(np.float64, (k,), elements=st.floats(allow_nan=False, allow_infinity=False)),
        )
    ),
    st.floats(min_value=1e-6, max_value=1e6),
    st.integers(0, 10**9),
)
def test_round_trip_is_lossless(arrays_, gamma, n):
    z, beta = arrays_
    spec = RKME.from_arrays(z, beta, gamma, n)
    back = loads_spec(dumps_spec(spec))
    np.testing.assert_array_equal(back.z_, z)
    np.testing.assert_array_equal(back.beta_, beta)
    assert back.gamma == gamma and back.num_points_ == n


def test_reading_specs_semantics_and_packages_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from wharf.specification import loads_spec, SpecificationError\n"
        "from wharf.specification.semantic import SemanticSpec\n"
        "from wharf.specification.package import read_package\n"
        f"loads_spec({REFERENCE_FILE!r})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_json_through_orjson_keeps_json_behaviour():
    """The catalog's JSON columns go through orjson; what it refuses falls back to json."""
    import json

    from wharf.specification.jsonio import dump_json, load_json

    value = {"Name": {"Values": "ü"}, "dims": [1, 2], "score": 0.25, "big": 2**70}
    assert json.loads(dump_json(value)) == value  # the big int went through json
    assert load_json(dump_json({"a": [1.5, None]})) == {"a": [1.5, None]}
    assert json.loads(dump_json({1: "x"})) == {"1": "x"}  # keys become strings, as in json
    assert load_json("[NaN]")[0] != load_json("[NaN]")[0]  # json's NaN, which orjson refuses

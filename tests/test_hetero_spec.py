"""The heterogeneous market's specification: the reference's spec files, eligibility, the map
and its training (tiny networks, a few steps)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from wharf.specification.errors import SpecificationError
from wharf.specification.hetero import (
    HETERO_SPEC_TYPE,
    HeteroInputError,
    check_hetero_input,
    dumps_hetero_spec,
    hetero_problem,
    load_hetero_spec,
    loads_hetero_spec,
    save_hetero_spec,
)
from wharf.specification.hetero.model import HeteroMap
from wharf.specification.hetero.network import HeteroMapConfig
from wharf.specification.hetero.training import column_views, train_hetero_map
from wharf.specification.rkme import RKME
from wharf.specification.semantic import generate_semantic_spec

TINY = HeteroMapConfig(hidden_dim=16, num_layers=1, num_heads=2, ffn_dim=16, projection_dim=8)
WORDS = ("age", "income", "height", "rainfall", "price", "speed", "weight", "score")


def reference_file(k: int = 4, dim: int = 128, seed: int = 0) -> str:
    """A spec file as the reference writes it: compact JSON, its keys in its order."""
    rng = np.random.default_rng(seed)
    data = {
        "z": rng.normal(size=(k, dim)).tolist(),
        "beta": (np.ones(k) / k).tolist(),
        "embedding": None,
        "weight": None,
        "gamma": 0.1,
        "type": HETERO_SPEC_TYPE,
    }
    return json.dumps(data, separators=(",", ":"))


def semantic(width: int, described: int | None = None, **kwargs) -> dict:
    described = width if described is None else described
    kwargs.setdefault("data_type", "Table")
    kwargs.setdefault("task_type", "Classification")
    return generate_semantic_spec(
        name="m",
        library_type="Scikit-learn",
        scenarios=["Business"],
        license="MIT",
        input_description={
            "Dimension": width,
            "Description": {str(i): f"{WORDS[i % len(WORDS)]} {i}" for i in range(described)},
        },
        output_description={"Dimension": 2, "Description": {}},
        **kwargs,
    )


def tables(n: int = 6, seed: int = 0) -> list[tuple[np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        d = int(rng.integers(2, 6))
        cols = [WORDS[j] for j in rng.choice(len(WORDS), d, replace=False)]
        out.append((rng.normal(size=(6, d)), cols))
    return out


# -- the spec file ---------------------------------------------------------------------------


def test_reference_files_load_and_save_unchanged(tmp_path):
    text = reference_file()
    spec = loads_hetero_spec(text)
    assert spec.z_.shape == (4, 128) and spec.beta_.sum() == pytest.approx(1.0)
    assert spec.gamma == 0.1 and spec.spec_type == HETERO_SPEC_TYPE
    assert dumps_hetero_spec(spec) == text
    path = tmp_path / "00000001.json"
    path.write_text(text)
    save_hetero_spec(load_hetero_spec(path), tmp_path / "again.json")
    assert (tmp_path / "again.json").read_text() == text


def test_unknown_embedding_values_are_kept():
    data = json.loads(reference_file())
    data["embedding"], data["weight"] = [1, 2], {"a": 1}
    text = json.dumps(data, separators=(",", ":"))
    assert dumps_hetero_spec(loads_hetero_spec(text)) == text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "RKMETableSpecification"}, "type"),
        ({"beta": [0.5, 0.5]}, "beta"),
        ({"z": [[1.0], [1.0, 2.0], [1.0], [1.0]]}, "z"),
        ({"gamma": -1}, "gamma"),
    ],
)
def test_bad_files_are_refused_naming_the_key(change, message):
    data = json.loads(reference_file())
    data.update(change)
    with pytest.raises(SpecificationError, match=message):
        loads_hetero_spec(json.dumps(data))


def test_a_hetero_spec_is_not_fitted():
    with pytest.raises(SpecificationError, match="not fitted"):
        loads_hetero_spec(reference_file()).fit(np.zeros((3, 2)))


# -- eligibility -----------------------------------------------------------------------------


def test_an_eligible_table_gives_its_descriptions():
    assert check_hetero_input(semantic(3), "RKMETableSpecification", 3) == [
        "age 0",
        "income 1",
        "height 2",
    ]


@pytest.mark.parametrize(
    ("spec", "spec_type", "width", "field"),
    [
        (semantic(4, described=2), "RKMETableSpecification", 4, "Input.Description"),
        (semantic(3), "RKMETableSpecification", 5, "Input.Dimension"),
        (semantic(3), "RKMEImageSpecification", 3, "stat_spec"),
        (semantic(3, task_type="Segmentation"), "RKMETableSpecification", 3, "Task"),
    ],
)
def test_ineligible_tables_name_the_field(spec, spec_type, width, field):
    problem = hetero_problem(spec, spec_type, width)
    assert isinstance(problem, HeteroInputError) and problem.field == field
    assert str(problem).startswith(field)


def test_undescribed_columns_are_listed():
    problem = hetero_problem(semantic(9, described=1), "RKMETableSpecification", 9)
    assert "8 of 9 columns" in str(problem) and "columns 1, 2, 3, 4, 5, …" in str(problem)


def test_blank_and_overlong_descriptions_are_refused():
    spec = semantic(2)
    spec["Input"]["Description"]["1"] = "   "
    assert hetero_problem(spec, "RKMETableSpecification", 2).field == "Input.Description"
    spec["Input"]["Description"]["1"] = "x" * 5000
    assert hetero_problem(spec, "RKMETableSpecification", 2).field == "Input.Description.1"


# -- the map and its training ----------------------------------------------------------------


def test_column_views_overlap_as_the_reference():
    views = column_views(7, 3, 0.5)
    assert [v.tolist() for v in views] == [[0, 1, 2, 3, 4], [3, 4, 5, 6], [3, 4, 5, 6]]
    assert [v.tolist() for v in column_views(1, 3, 0.5)] == [[0]]


def test_training_with_a_seed_is_deterministic_on_the_cpu():
    data = tables()
    first = train_hetero_map(data, TINY, epochs=2, batch_rows=12, seed=3, device="cpu")
    second = train_hetero_map(data, TINY, epochs=2, batch_rows=12, seed=3, device="cpu")
    other = train_hetero_map(data, TINY, epochs=2, batch_rows=12, seed=4, device="cpu")
    a, b, c = (m.network.state_dict() for m in (first, second, other))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert first.info["steps"] > 0 and np.isfinite(first.info["final_loss"])


def test_training_moves_only_the_tokens_it_saw():
    start = HeteroMap.initial(TINY, seed=0, device="cpu").network.token_embedding.weight
    trained = train_hetero_map(tables(), TINY, epochs=1, seed=0, device="cpu")
    changed = (trained.network.token_embedding.weight != start).any(dim=1)
    assert 0 < int(changed.sum()) <= 20


def test_a_mapped_spec_keeps_the_rkme_weights_and_survives_saving():
    hmap = train_hetero_map(tables(), TINY, epochs=1, seed=0, device="cpu", info={"version": 7})
    rng = np.random.default_rng(1)
    rkme = RKME.from_arrays(rng.normal(size=(5, 3)), rng.dirichlet(np.ones(5)), 0.1, 50)
    spec = hmap.map_spec(rkme, ["age", "price", "wind speed"])
    assert spec.z_.shape == (5, 16) and np.array_equal(spec.beta_, rkme.beta_)
    assert spec.gamma == 0.1 and spec.map_version == 7
    again = HeteroMap.from_bytes(hmap.to_bytes(), device="cpu")
    assert again.version == 7
    np.testing.assert_allclose(again.map_spec(rkme, ["age", "price", "wind speed"]).z_, spec.z_)
    # The same table's columns in another order describe the same rows: another spec, but
    # the map reads a column by its description, not its position.
    assert loads_hetero_spec(dumps_hetero_spec(spec)).z_.shape == (5, 16)


def test_a_map_refuses_bad_bytes_and_bad_tables():
    with pytest.raises(SpecificationError, match="not a saved map"):
        HeteroMap.from_bytes(b"not a map")
    hmap = HeteroMap.initial(TINY, device="cpu")
    with pytest.raises(SpecificationError, match="descriptions"):
        hmap.map_rows(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(SpecificationError, match="epochs"):
        train_hetero_map(tables(), TINY, epochs=0)

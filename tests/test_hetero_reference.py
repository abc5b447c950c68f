"""Hetero spec files between Wharf and the reference package (0.4.0.post1, in its own
environment ``.venv-reference``): a file the reference saves loads and saves again in Wharf
to the same bytes, and a file Wharf writes loads in the reference to the same spec."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from wharf.specification.hetero import (
    HeteroMapTableSpecification,
    dumps_hetero_spec,
    load_hetero_spec,
    save_hetero_spec,
)
from wharf.specification.mmd import mmd2

from .test_reference_client import reference_python  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.services, pytest.mark.slow]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import torch
    from learnware.specification import HeteroMapTableSpecification

    ours, theirs = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    spec = HeteroMapTableSpecification(cuda_idx=-1)
    spec.z = torch.from_numpy(rng.normal(size=(5, 128)))
    spec.beta = torch.from_numpy(rng.dirichlet(np.ones(5)))
    spec.save(theirs)
    loaded = HeteroMapTableSpecification(cuda_idx=-1)
    loaded.load(ours)
    print(json.dumps({"dist": loaded.dist(spec), "z": loaded.get_z().tolist(),
                      "beta": loaded.get_beta().tolist()}))
    """
)


def test_files_cross_between_wharf_and_the_reference(reference_python, tmp_path):  # noqa: F811
    rng = np.random.default_rng(1)
    ours = HeteroMapTableSpecification.from_arrays(
        rng.normal(size=(4, 128)), rng.dirichlet(np.ones(4))
    )
    save_hetero_spec(ours, tmp_path / "ours.json")
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    out = subprocess.run(
        [
            str(reference_python),
            str(script),
            str(tmp_path / "ours.json"),
            str(tmp_path / "theirs.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_array_equal(np.array(seen["z"]), ours.z_)
    np.testing.assert_array_equal(np.array(seen["beta"]), ours.beta_)

    text = Path(tmp_path / "theirs.json").read_text()
    theirs = load_hetero_spec(tmp_path / "theirs.json")
    assert dumps_hetero_spec(theirs) == text
    assert seen["dist"] == pytest.approx(mmd2(ours, theirs), rel=1e-9)

"""The GPU paths agree with the CPU ones (skipped where torch sees no CUDA device)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from wharf.specification import RKME, dumps_spec, loads_spec, mmd2
from wharf.specification.image import RKMEImage
from wharf.specification.mmd import SpecBank
from wharf.specification.nngp import ImageBank, nngp_kernel

from tests.oracles import gaussian_mixture, mmd2_to_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_nngp_kernel_on_the_gpu_equals_the_cpu():
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(40, 3, 32, 32)))
    y = x[:13] * 1.3 + 0.1
    np.testing.assert_allclose(
        nngp_kernel(x.cuda(), y.cuda()).cpu().numpy(), nngp_kernel(x, y).numpy(), atol=1e-12
    )
    own = nngp_kernel(x.cuda()).cpu()
    np.testing.assert_allclose(own.numpy(), nngp_kernel(x).numpy(), atol=1e-12)


def test_banks_on_the_gpu_rank_as_on_the_cpu():
    rng = np.random.default_rng(1)
    tables = [
        RKME.from_arrays(rng.normal(size=(30, 5)) + s, rng.dirichlet(np.ones(30)), 0.1, 5)
        for s in range(6)
    ]
    images = [
        RKMEImage.from_arrays(rng.normal(size=(8, 1, 32, 32)) + s / 3, rng.dirichlet(np.ones(8)))
        for s in range(6)
    ]
    for bank_of in (
        lambda d: SpecBank(0.1, 5, device=d),
        lambda d: ImageBank((1, 32, 32), device=d),
    ):
        specs = tables if isinstance(bank_of("cpu"), SpecBank) else images
        cpu, gpu = bank_of("cpu"), bank_of("cuda")
        cpu.add(specs)
        gpu.add(specs)
        np.testing.assert_allclose(gpu.mmd2(specs[2]), cpu.mmd2(specs[2]), atol=1e-11)
        np.testing.assert_allclose(
            gpu.mmd2(specs[2]), [mmd2(specs[2], s) for s in specs], atol=1e-11
        )


def test_table_fit_on_the_gpu_beats_random_points():
    X = gaussian_mixture(2000, 10, seed=3)
    spec = RKME(n_points=50, seed=0, device="cuda").fit(X)
    assert spec.z_.shape == (50, 10) and spec.beta_.sum() == pytest.approx(1.0)
    ours = mmd2_to_data(spec.z_, spec.beta_, X, 0.1)
    idx = np.random.default_rng(0).choice(len(X), 50, replace=False)
    rand = mmd2_to_data(X[idx], np.full(50, 1 / 50), X, 0.1)
    assert ours < rand
    assert loads_spec(dumps_spec(spec)).z_.tolist() == spec.z_.tolist()


def test_image_fit_on_the_gpu_matches_the_cpu_quality():
    from sklearn.datasets import load_digits

    digits = load_digits().images[:300]
    options = {
        "n_points": 10,
        "seed": 0,
        "steps": 5,
        "n_models": 2,
        "model_config": {"net_width": 16},
    }
    gpu = RKMEImage(device="cuda", **options).fit(digits)
    cpu = RKMEImage(device="cpu", **options).fit(digits)
    assert gpu.z_.shape == cpu.z_.shape == (10, 1, 32, 32)
    assert gpu.beta_.sum() == pytest.approx(1.0)
    # The same seed draws the same nets on both devices; float32 arithmetic differs, so the
    # two fits agree in quality, not bit for bit.
    from wharf.specification._image_fit import prepare_images

    data = RKMEImage.from_arrays(prepare_images(digits).numpy(), np.full(300, 1 / 300))
    assert mmd2(gpu, data) == pytest.approx(mmd2(cpu, data), rel=0.25)
    assert loads_spec(dumps_spec(gpu)).beta_.tolist() == gpu.beta_.tolist()


def test_image_index_embeddings_on_the_gpu_equal_the_cpu():
    from wharf.specification.image_embedding import ImageIndexEmbedding

    rng = np.random.default_rng(4)
    specs = [
        RKMEImage.from_arrays(rng.normal(size=(6, 3, 32, 32)), rng.dirichlet(np.ones(6)))
        for _ in range(5)
    ]
    emb = ImageIndexEmbedding(3)
    np.testing.assert_allclose(
        emb.embed_many(specs, device="cuda"), emb.embed_many(specs), rtol=1e-4, atol=1e-6
    )

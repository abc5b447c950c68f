"""Tests for image specifications: the NNGP kernel, the image RKME fit, its JSON format."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from wharf.specification import SpecificationError, dumps_spec, loads_spec, mmd2
from wharf.specification._image_fit import prepare_images
from wharf.specification.image import RKMEImage
from wharf.specification.nngp import ImageBank, inner_product, nngp_kernel

TINY = float(np.finfo(np.float32).tiny)


# -- a slow, independent NNGP: one pair at a time, in numpy ---------------------------------
def _box(m: np.ndarray, k: int, var_weight: float, var_bias: float, stride: int = 1):
    """The reference's Conv2d kernel layer: ones(k, k) · var_weight / k² (zero padding k // 2
    for k = 3, none otherwise), stride, plus var_bias."""
    pad = k // 2 if k == 3 else 0
    p = np.pad(m, pad)
    h = (p.shape[0] - k) // stride + 1
    out = np.zeros((h, h))
    for i in range(h):
        for j in range(h):
            out[i, j] = p[i * stride : i * stride + k, j * stride : j * stride + k].sum()
    return out * var_weight / k**2 + var_bias


def oracle_kernel(x: np.ndarray, y: np.ndarray, same_point: bool = False) -> float:
    xy, xx, yy = (x * y).mean(0), (x * x).mean(0), (y * y).mean(0)
    for _ in range(3):
        xy, xx, yy = (_box(m, 3, math.sqrt(2), 0.1) for m in (xy, xx, yy))
        v = xx * yy + TINY
        cos = np.clip(xy / np.sqrt(v), -1, 1)
        sin = np.sqrt(np.clip(v - xy**2, 0, None))
        xy = (sin + (math.pi - np.arccos(cos)) * xy) / (2 * math.pi)
        xx, yy = xx / 2, yy / 2
        if same_point:
            xy = xx
        xy, xx, yy = (_box(m, 2, 1.0, 0.0, stride=2) for m in (xy, xx, yy))
    return float(_box(xy, 4, 1.0, 0.0)[0, 0])


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    gray = rng.normal(size=(5, 1, 32, 32))
    rgb = rng.normal(size=(4, 3, 32, 32)) * np.array([1.0, 2.0, 0.5])[None, :, None, None]
    return gray, rgb


def test_nngp_kernel_matches_a_direct_computation(images):
    for x in images:
        y = np.roll(x, 1, axis=0) * 1.5 + 0.2
        got = nngp_kernel(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        want = [[oracle_kernel(a, b) for b in y] for a in x]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
        own = nngp_kernel(torch.from_numpy(x)).numpy()  # the same set: exact diagonal
        want = [[oracle_kernel(a, b, i == j) for j, b in enumerate(x)] for i, a in enumerate(x)]
        np.testing.assert_allclose(own, want, rtol=0, atol=1e-13)


def test_nngp_kernel_is_symmetric_and_positive_semidefinite():
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(24, 2, 32, 32)))
    k = nngp_kernel(x, block_pixels=5 * 1024)  # many blocks, some mirrored
    assert torch.equal(k, k.T)
    assert float(torch.linalg.eigvalsh(k).min()) > -1e-12
    cross = nngp_kernel(x, x[:7])
    np.testing.assert_allclose(cross.numpy(), nngp_kernel(x[:7], x).T.numpy(), atol=1e-15)


def test_nngp_kernel_refuses_other_shapes():
    with pytest.raises(SpecificationError, match="32, 32"):
        nngp_kernel(torch.zeros(2, 1, 16, 16))
    with pytest.raises(SpecificationError, match="channels"):
        nngp_kernel(torch.zeros(2, 1, 32, 32), torch.zeros(2, 3, 32, 32))


def _spec(rng, k=4, c=1, shift=0.0) -> RKMEImage:
    return RKMEImage.from_arrays(rng.normal(size=(k, c, 32, 32)) + shift, rng.dirichlet(np.ones(k)))


def test_mmd2_of_image_specs_and_the_bank():
    rng = np.random.default_rng(2)
    a, b, c = _spec(rng), _spec(rng, k=3), _spec(rng, k=5, shift=1.0)
    assert mmd2(a, a) == pytest.approx(0.0, abs=1e-14)
    assert mmd2(a, b) == pytest.approx(mmd2(b, a), abs=1e-14)
    assert mmd2(a, b) > 0
    direct = sum(
        a.beta_[i] * b.beta_[j] * oracle_kernel(a.z_[i].astype(float), b.z_[j].astype(float))
        for i in range(4)
        for j in range(3)
    )
    assert inner_product(a, b) == pytest.approx(direct, abs=1e-13)
    bank = ImageBank((1, 32, 32))
    bank.add([a, b, c])
    np.testing.assert_allclose(bank.mmd2(a), [mmd2(a, s) for s in (a, b, c)], atol=1e-13)
    np.testing.assert_allclose(bank.mmd2(c, [2, 0]), [mmd2(c, c), mmd2(c, a)], atol=1e-13)
    with pytest.raises(SpecificationError, match="cannot compare"):
        from wharf.specification import RKME

        mmd2(a, RKME.from_arrays(np.zeros((2, 3)), [0.5, 0.5], 0.1, 2))


# -- preparing and fitting ------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    keep = d.target < 3
    return d.images[keep][:150], d.target[keep][:150]


def test_prepare_images_cleans_resizes_standardises_and_whitens():
    rng = np.random.default_rng(3)
    x = rng.random((40, 8, 8)) * 16
    x[0, 2, 3] = np.nan
    x[1, 0, 0] = np.inf
    out = prepare_images(x)
    assert out.shape == (40, 1, 32, 32) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert float(out.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(out.std()) == pytest.approx(1.0, abs=1e-4)

    rgb = prepare_images(rng.random((30, 3, 32, 32)))
    flat = rgb.reshape(30, -1).double()
    eig = torch.linalg.eigvalsh(flat.T @ flat / 30)
    assert float(eig.max()) <= 1.0 + 1e-4  # ZCA with the regulariser shrinks every direction

    bad = np.ones((3, 1, 8, 8))
    bad[1] = np.nan
    with pytest.raises(SpecificationError, match="image 1 has no finite pixel"):
        prepare_images(bad)
    with pytest.raises(SpecificationError, match=r"\(N, C, H, W\)"):
        prepare_images(np.ones((3, 8)))


def _uniform(z) -> RKMEImage:
    return RKMEImage.from_arrays(z, np.full(len(z), 1.0 / len(z)))


FAST = {"steps": 5, "n_models": 2, "model_config": {"net_width": 16}, "device": "cpu"}


def test_fit_beats_random_subsamples_under_the_exact_kernel(digits):
    X, _ = digits
    spec = RKMEImage(n_points=8, seed=0, **FAST).fit(X)
    assert spec.z_.shape == (8, 1, 32, 32) and spec.z_.dtype == np.float32
    assert (spec.beta_ >= 0).all() and spec.beta_.sum() == pytest.approx(1.0, abs=1e-9)
    assert spec.num_points_ == len(X)
    prepared = prepare_images(X).numpy()
    data = ImageBank((1, 32, 32))  # the data's own term is computed once
    data.add([_uniform(prepared)])
    ours = data.mmd2(spec)[0]
    rng = np.random.default_rng(0)
    for _ in range(5):
        assert ours < data.mmd2(_uniform(prepared[rng.choice(len(X), 8, replace=False)]))[0]
    noise = RKMEImage(n_points=8, seed=0, init="normal", **{**FAST, "steps": 0}).fit(X)
    assert ours < data.mmd2(noise)[0]


def test_fit_is_deterministic_and_validates_its_input(digits):
    X = digits[0][:60]
    a = RKMEImage(n_points=4, seed=5, **{**FAST, "steps": 2}).fit(X)
    b = RKMEImage(n_points=4, seed=5, **{**FAST, "steps": 2}).fit(X)
    np.testing.assert_array_equal(a.z_, b.z_)
    np.testing.assert_array_equal(a.beta_, b.beta_)
    assert RKMEImage(n_points=100, **{**FAST, "steps": 0}).fit(X).z_.shape[0] == 40  # ⌊2n/3⌋
    with pytest.raises(SpecificationError, match="init"):
        RKMEImage(init="zeros").fit(X)
    with pytest.raises(SpecificationError, match="net_depth"):
        RKMEImage(model_config={"net_depth": 2}).fit(X)
    with pytest.raises(SpecificationError, match="numeric"):
        RKMEImage(**FAST).fit(np.array([["a"]]))


def test_herding_draws_near_the_points():
    spec = _spec(np.random.default_rng(4), k=3)
    samples = spec.herd(7, seed=1)
    assert samples.shape == (7, 1, 32, 32)
    nearest = np.abs(samples[:, None] - spec.z_[None]).max(axis=(2, 3, 4)).min(1)
    assert (nearest < 0.1).all()


# -- the JSON format ------------------------------------------------------------------------
def _reference_file(rng, k=2, c=3) -> str:
    """An image spec as the reference's ``save`` writes it (no num_points)."""
    doc = {
        "RKME_IMAGE_VERSION": 1,
        "msg": None,
        "z": rng.normal(size=(k, c, 32, 32)).astype(np.float32).tolist(),
        "beta": [0.25, 0.75][:k],
        "n_models": 16,
        "model_config": {"k": 2, "mu": 0, "sigma": None, "net_width": 128, "net_depth": 3},
        "type": "RKMEImageSpecification",
    }
    return json.dumps(doc, separators=(",", ":"))


def test_reads_a_reference_image_spec_and_writes_one_it_can_read():
    text = _reference_file(np.random.default_rng(5))
    spec = loads_spec(text)
    assert isinstance(spec, RKMEImage)
    assert spec.z_.shape == (2, 3, 32, 32) and spec.z_.dtype == np.float32
    assert spec.beta_.tolist() == [0.25, 0.75] and spec.num_points_ == 0
    assert spec.n_models == 16 and spec.model_config_["net_width"] == 128

    out = json.loads(dumps_spec(spec))
    ref = json.loads(text)
    assert set(ref) <= set(out) and set(out) - set(ref) == {"num_points"}
    # What the reference's loader does: z as float32, beta as float64, known keys only.
    np.testing.assert_array_equal(np.array(out["z"], dtype="float32"), spec.z_)
    assert out["beta"] == ref["beta"] and out["model_config"] == ref["model_config"]
    assert out["RKME_IMAGE_VERSION"] == 1 and out["type"] == "RKMEImageSpecification"
    again = loads_spec(dumps_spec(spec))
    np.testing.assert_array_equal(again.z_, spec.z_)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"z": [[[0.0]]]}, "K images of shape"),
        ({"beta": [1.0]}, "K = 2 weights"),
        ({"RKME_IMAGE_VERSION": 2}, "RKME_IMAGE_VERSION 2"),
        ({"n_models": 0}, "n_models"),
        ({"msg": 3}, "msg"),
        ({"model_config": {"net_depth": 4}}, "net_depth"),
    ],
)
def test_malformed_image_specs_are_refused(change, message):
    doc = json.loads(_reference_file(np.random.default_rng(6)))
    doc.update(change)
    with pytest.raises(SpecificationError, match=message):
        loads_spec(json.dumps(doc))


def test_reading_an_image_spec_does_not_import_torch():
    code = (
        "import sys\n"
        "from wharf.specification import loads_spec\n"
        f"spec = loads_spec({_reference_file(np.random.default_rng(7), k=1, c=1)!r})\n"
        "assert spec.spec_type == 'RKMEImageSpecification'\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# -- index embeddings -----------------------------------------------------------------------
def test_random_convnet_features_estimate_the_nngp_kernel(digits):
    from wharf.specification.image_embedding import ImageIndexEmbedding

    x = prepare_images(digits[0][:120]).float()
    exact = nngp_kernel(x.double()).numpy()
    emb = ImageIndexEmbedding(1)
    f = emb.features(x).numpy()
    assert f.shape == (120, emb.size) == (120, 8 * 16 * 16)
    approx = f @ f.T
    assert np.mean(np.diag(approx) / np.diag(exact)) == pytest.approx(1.0, abs=0.1)
    # MMD² between random halves of the data: what a FAISS search compares.
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(60):
        v = np.zeros(120)
        v[rng.choice(120, 15, replace=False)] += 1 / 15
        v[rng.choice(120, 15, replace=False)] -= 1 / 15
        pairs.append((v @ exact @ v, v @ approx @ v))
    assert np.corrcoef(np.array(pairs).T)[0, 1] > 0.95
    # Centred on the kernel (a plain average pool, without the random signs, would add the
    # covariances of neighbouring pixels).
    assert np.median(np.array(pairs)[:, 1] / np.array(pairs)[:, 0]) == pytest.approx(1, abs=0.2)


def test_image_embeddings_are_deterministic_and_weighted_by_beta():
    from wharf.specification.image_embedding import ImageIndexEmbedding

    rng = np.random.default_rng(5)
    specs = [_spec(rng, k=3, c=3), _spec(rng, k=5, c=3)]
    a, b = ImageIndexEmbedding(3), ImageIndexEmbedding(3)
    np.testing.assert_array_equal(a.embed_many(specs), b.embed_many(specs, block_rows=2))
    assert a.key == b.key != ImageIndexEmbedding(3, seed=1).key
    feats = a.features(torch.from_numpy(specs[1].z_)).numpy()
    np.testing.assert_allclose(a.embed(specs[1]), specs[1].beta_ @ feats, rtol=1e-5, atol=1e-7)
    with pytest.raises(SpecificationError, match="shape"):
        a.features(torch.zeros(2, 1, 32, 32))

"""Image partitions through FAISS: recall and speed of the random-ConvNet index embeddings.

Run: ``PYTHONPATH=. python -m bench.image_index [--n N] [--k K] [--queries Q] [--cuda]``

Market: N image learnwares over the digits of ``bench.image_rkme`` (8×8 digits upscaled to
32×32): each learnware's spec is K prepared images of 1–3 random digit classes with Dirichlet
weights, as a learnware trained on that part of the task would have. Users are drawn the same
way (their own K images). For each user the partition ranks

- every learnware exactly (the NNGP scan, the baseline), and
- the top-C of FAISS over the embeddings
  (:class:`specification.image_embedding.ImageIndexEmbedding`, a flat index at this size)
  re-ranked exactly,

and recall@10 is the share of the exact top-10 that the coarse path returns. Defaults (CPU):
N = 1,000, K = 10, 20 users. ``--cuda`` runs the partition's kernel on the GPU and writes
``results/image_index_cuda.md``; use a larger ``--n`` there.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from wharf.market.index.partition import IndexConfig, PartitionIndex
from wharf.market.scoring import partition_key
from wharf.specification._image_fit import prepare_images
from wharf.specification.image import RKMEImage

from ._common import ms, table, timed, verdict, write_results
from .image_rkme import digit_images

CANDIDATES = (25, 50, 100, 200)
TOP = 10


def draw_specs(prepared: np.ndarray, labels: np.ndarray, n: int, k: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    specs = []
    for _ in range(n):
        classes = rng.choice(10, size=rng.integers(1, 4), replace=False)
        pool = np.flatnonzero(np.isin(labels, classes))
        rows = rng.choice(pool, size=k, replace=False)
        specs.append(RKMEImage.from_arrays(prepared[rows], rng.dirichlet(np.ones(k))))
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="learnwares in the partition")
    parser.add_argument("--k", type=int, default=10, help="points per spec")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--cuda", action="store_true", help="run the kernel on the GPU")
    args = parser.parse_args()
    device = "cuda" if args.cuda else "cpu"
    if args.cuda and not torch.cuda.is_available():
        raise SystemExit("--cuda: torch.cuda.is_available() is False on this machine")
    from sklearn.datasets import load_digits

    t0 = time.perf_counter()
    labels = load_digits().target
    images = digit_images()
    labels = np.concatenate([labels, labels[: len(images) - len(labels)]])
    prepared = prepare_images(images).numpy()
    specs = draw_specs(prepared, labels, args.n, args.k, seed=0)
    users = draw_specs(prepared, labels, args.queries, args.k, seed=1)

    config = IndexConfig(image_exact_max_rows=0, image_device=device)
    part = PartitionIndex(partition_key(specs[0]), config)
    t_embed, vectors = timed(lambda: part.embedding.embed_many(specs, device=device))
    t_add, _ = timed(lambda: part.add(np.arange(1, args.n + 1), specs))

    sizes = [c for c in CANDIDATES if c < args.n]
    exact_times, coarse_times = [], {c: [] for c in sizes}
    recall = {c: [] for c in sizes}
    for user in users:
        t, full = timed(lambda u=user: part.rank(u, candidates=args.n))
        assert full.method == "exact"
        exact_times.append(t)
        want = set(full.ids[:TOP].tolist())
        for c in sizes:
            t, got = timed(lambda u=user, c=c: part.rank(u, candidates=c))
            assert got.method == "coarse"
            coarse_times[c].append(t)
            recall[c].append(len(want & set(got.ids[:TOP].tolist())) / TOP)

    p50_exact = statistics.median(exact_times)
    rows = [
        [
            f"embed {args.n:,} specs of K={args.k} ({part.embedding.size} floats each), {device}",
            f"{t_embed:.1f} s ({1e3 * t_embed / args.n:.1f} ms per spec)",
            "",
        ],
        ["add them to the partition (self-terms, FAISS)", f"{t_add:.1f} s", ""],
        [f"exact NNGP scan of all {args.n:,}, p50", ms(p50_exact), "baseline"],
    ]
    for c in sizes:
        p50 = statistics.median(coarse_times[c])
        r = float(np.mean(recall[c]))
        rows.append(
            [
                f"FAISS top-{c} re-ranked exactly: p50 / recall@{TOP} (min over users)",
                f"{ms(p50)} ({p50_exact / p50:.1f}× faster) / {r:.3f} ({min(recall[c]):.1f})",
                verdict(r >= 0.95) if c == config.image_min_candidates else "",
            ]
        )
    del vectors
    body = (
        f"N = {args.n:,} learnwares, K = {args.k}, {args.queries} users, top-{TOP}; "
        f"the default re-ranks {config.image_min_candidates} candidates (target: mean "
        "recall@10 ≥ 0.95 there).\n\n" + table(["what", "measured", "result"], rows)
    )
    body += f"\n\nTotal wall time: {time.perf_counter() - t0:.0f} s.\n"
    suffix = "_cuda" if args.cuda else ""
    write_results("image_index", "Image partitions: FAISS recall and speed", body, suffix=suffix)


if __name__ == "__main__":
    main()

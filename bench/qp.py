"""Simplex QP: accuracy and speed of ``solve_simplex_qp`` against a tight Clarabel solve.

Run: ``PYTHONPATH=. python -m bench.qp``

200 random problems  min ½wᵀKw − cᵀw  s.t. w ≥ 0, Σw = 1  with 5 to 200 variables:
half shaped like the β step of an RKME fit, half like the weight step of a mixture search.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from wharf.specification import RKME, IndexEmbedding, solve_simplex_qp
from wharf.specification.qp import _clarabel, objective

from ._common import ms, table, verdict, write_results

GAMMA = 0.1


def rbf(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-GAMMA * d2)


def rkme_problem(m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """K = k(z, z) for m random points, c = mean kernel from z to 500 random data rows."""
    d = int(rng.choice([2, 5, 10, 20, 50]))
    scale = rng.uniform(0.3, 3.0)  # small scale + low d: nearly singular K
    z = scale * rng.standard_normal((m, d))
    x = rng.standard_normal((500, d)) + rng.normal(0.0, 1.0, size=d)
    return rbf(z, z), rbf(z, x).mean(1), f"RKME β (d={d})"


def mixture_problem(m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """K = Gram matrix of m spec embeddings, c = their inner products with a user's embedding
    (a random mixture of 3 of the specs plus one unrelated spec)."""
    d, k = 10, 20
    spread = rng.uniform(0.2, 2.0)  # small spread: near-duplicate specs, ill-conditioned Gram
    specs = [
        RKME.from_arrays(
            o + rng.standard_normal((k, d)), rng.dirichlet(np.ones(k)), GAMMA, num_points=100
        )
        for o in spread * rng.standard_normal((m + 1, d))
    ]
    e = IndexEmbedding(d, GAMMA, size=256, seed=0).embed_many(specs).astype(np.float64)
    w = np.zeros(m)
    w[rng.choice(m, size=min(3, m), replace=False)] = rng.dirichlet(np.ones(min(3, m)))
    user = 0.8 * (w @ e[:m]) + 0.2 * e[m]
    return e[:m] @ e[:m].T, e[:m] @ user, "mixture"


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    records = []
    for i in range(args.problems):
        m = int(rng.integers(5, 201))
        K, c, kind = (rkme_problem if i % 2 == 0 else mixture_problem)(m, rng)
        K = 0.5 * (K + K.T)
        t_ours, res = best_of(lambda K=K, c=c: solve_simplex_qp(K, c))
        t_clar, w_clar = best_of(lambda K=K, c=c: _clarabel(K, c))
        f_ours, f_clar = res.objective, objective(K, c, w_clar)
        scale = max(abs(f_clar), 1e-12 * max(float(np.abs(np.diag(K)).max()), 1e-300))
        # Warm start, as in consecutive β steps of a fit: the same K, c moved by ~1 %, and the
        # previous solution as w0.
        c2 = c * (1.0 + 0.01 * rng.standard_normal(m))
        t_warm, res2 = best_of(lambda K=K, c2=c2, w0=res.w: solve_simplex_qp(K, c2, w0=w0))
        t_cold2, _ = best_of(lambda K=K, c2=c2: solve_simplex_qp(K, c2))
        f_clar2 = objective(K, c2, _clarabel(K, c2))
        gap2 = (res2.objective - f_clar2) / max(abs(f_clar2), 1e-300)
        eig = np.linalg.eigvalsh(K)
        records.append(
            dict(
                m=m,
                kind=kind.split(" ")[0],
                method=res.method,
                t_ours=t_ours,
                t_clar=t_clar,
                gap=(f_ours - f_clar) / scale,
                neg=max(0.0, float(-res.w.min())),
                t_warm=t_warm,
                t_cold2=t_cold2,
                gap2=gap2,
                method2=res2.method,
                sum_err=abs(float(res.w.sum()) - 1.0),
                support=int((res.w > 0).sum()),
                cond=eig[-1] / max(eig[0], 1e-300),
            )
        )

    def summary(rows, label):
        gaps = np.array([r["gap"] for r in rows])
        t_o = np.median([r["t_ours"] for r in rows])
        t_c = np.median([r["t_clar"] for r in rows])
        methods = Counter(r["method"] for r in rows)
        return [
            label,
            len(rows),
            f"{gaps.max():+.2e}",
            f"{gaps.min():+.2e}",
            f"{np.median(np.abs(gaps)):.1e}",
            int((gaps < 0).sum()),
            ", ".join(f"{k}: {v}" for k, v in sorted(methods.items())),
            ms(t_o),
            ms(t_c),
            f"{t_c / t_o:.1f}×",
        ]

    groups = [
        ("all", records),
        ("RKME β step", [r for r in records if r["kind"] == "RKME"]),
        ("mixture step", [r for r in records if r["kind"] == "mixture"]),
        ("m = 5–50", [r for r in records if r["m"] <= 50]),
        ("m = 51–125", [r for r in records if 50 < r["m"] <= 125]),
        ("m = 126–200", [r for r in records if r["m"] > 125]),
    ]
    header = [
        "problems",
        "n",
        "max signed gap",
        "min signed gap",
        "median abs gap",
        "ours lower",
        "method used",
        "median time ours",
        "median time Clarabel",
        "Clarabel/ours",
    ]
    worst = max(r["gap"] for r in records)
    body = (
        "Problems: size m ~ U{5..200}, alternating two kinds. *RKME β step*: K = k(z, z) for m "
        "points z ~ s·N(0, I_d) (s ~ U[0.3, 3], d ∈ {2, 5, 10, 20, 50}), c = mean kernel from "
        "z to 500 rows of N(μ, I_d), γ = 0.1. *Mixture step*: K = Gram matrix of the 256-long "
        "`IndexEmbedding`s of m random specs (K=20, d=10, offsets with spread ~ U[0.2, 2]), "
        "c = their inner products with a user embedding (80 % a mixture of 3 of them, 20 % an "
        "unrelated spec). The main table uses cold starts (no `w0`); the warm-start rows below "
        "re-solve each problem with c perturbed by 1 % from the previous solution, as "
        "consecutive β steps of a fit do.\n\n"
        "Signed gap = (f_ours − f_Clarabel) / |f_Clarabel| with f = ½wᵀKw − cᵀw and Clarabel "
        "run through `specification.qp._clarabel` (gap and feasibility tolerances 1e-12); "
        "negative means ours is lower (better). Times: best of 3 per problem, median over "
        "problems.\n\n"
        + table(header, [summary(rows, label) for label, rows in groups if rows])
        + "\n\n"
        + table(
            ["check", "measured", "target", "result"],
            [
                [
                    "max signed relative gap (ours − Clarabel)",
                    f"{worst:+.2e}",
                    "≤ 1e-9",
                    verdict(worst <= 1e-9),
                ],
                [
                    "warm start: max signed gap (perturbed c, w0 = previous w)",
                    f"{max(r['gap2'] for r in records):+.2e}",
                    "≤ 1e-9",
                    verdict(max(r["gap2"] for r in records) <= 1e-9),
                ],
                [
                    "warm start: median time ours cold / ours warm / Clarabel (unperturbed)",
                    f"{ms(np.median([r['t_cold2'] for r in records]))} / "
                    f"{ms(np.median([r['t_warm'] for r in records]))} / "
                    f"{ms(np.median([r['t_clar'] for r in records]))}",
                    "",
                    "",
                ],
                [
                    "warm start: method used",
                    ", ".join(
                        f"{k}: {v}"
                        for k, v in sorted(Counter(r["method2"] for r in records).items())
                    ),
                    "",
                    "",
                ],
                ["max negative weight", f"{max(r['neg'] for r in records):.1e}", "0", ""],
                ["max abs(Σw − 1)", f"{max(r['sum_err'] for r in records):.1e}", "", ""],
                [
                    "condition number of K (median / max)",
                    f"{np.median([r['cond'] for r in records]):.1e} / "
                    f"{max(r['cond'] for r in records):.1e}",
                    "",
                    "",
                ],
                [
                    "support size (median / max)",
                    f"{np.median([r['support'] for r in records]):.0f} / "
                    f"{max(r['support'] for r in records)}",
                    "",
                    "",
                ],
            ],
        )
        + "\n"
    )
    write_results("qp", "Simplex QP vs Clarabel", body)


if __name__ == "__main__":
    main()

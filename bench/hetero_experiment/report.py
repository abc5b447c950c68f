"""Tables, plots and the results file of the heterogeneous experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import CLASSIFICATION, load
from .design import split
from .experiment import GAMMAS, TRUE_COLUMNS, BudgetOutcome, ExperimentResult, UserOutcome

HETERO = "Hetero reuse (top-1)"
SCRATCH = "From scratch"
MEAN_TASK = "Mean learnware of the task"
BEST_TASK = "Best learnware of the task"
CURVES_PLOT = "curves.png"
BUDGET_PLOT = "budgets.png"
TARGET_TOP1 = 0.8


def _unit(dataset: str) -> str:
    return "error %" if load(dataset).task == CLASSIFICATION else "RMSE"


def _fmt(value: float | None) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def datasets_of(result: ExperimentResult) -> list[str]:
    return list(dict.fromkeys(o.user.dataset for o in result.outcomes))


def label_counts(result: ExperimentResult) -> list[int]:
    return [0, *result.scale.labels]


def error_at(o: UserOutcome, method: str, n: int) -> float | None:
    """A user's error with ``n`` labels (the mean over seeds); ``None`` where the pool is too
    small or the search found nothing. With 0 labels both reuse and baselines are aligned
    learnwares; "From scratch" has no 0."""
    if n == 0:
        return o.zero_label.get(method)
    runs = o.curves.get(method, {}).get(n)
    return float(np.mean(runs)) if runs else None


#: Errors below this count as this in a ratio (one point of error rate; one unit of RMSE), so
#: a perfect from-scratch model does not make a ratio infinite.
RATIO_FLOOR = 1.0


def ratio(a: float, b: float) -> float:
    return max(a, RATIO_FLOOR) / max(b, RATIO_FLOOR)


def ratios(result: ExperimentResult, n: int, method: str = HETERO) -> list[float]:
    """``method``'s error / from-scratch error (each at least :data:`RATIO_FLOOR`), per user
    whose pool allows ``n`` labels."""
    out = []
    for o in result.outcomes:
        a, b = error_at(o, method, n), error_at(o, SCRATCH, n)
        if a is not None and b is not None:
            out.append(ratio(a, b))
    return out


def wins(result: ExperimentResult, n: int, method: str = HETERO) -> tuple[int, int, int]:
    """(users where ``method`` is better than from scratch, worse, equal) at ``n`` labels
    (seed means)."""
    better = worse = equal = 0
    for o in result.outcomes:
        a, b = error_at(o, method, n), error_at(o, SCRATCH, n)
        if a is None or b is None:
            continue
        better += a < b
        worse += a > b
        equal += a == b
    return better, worse, equal


def top1_rate(result: ExperimentResult) -> float:
    return float(np.mean([o.top1_of_task for o in result.outcomes]))


def summary(result: ExperimentResult) -> str:
    rate = top1_rate(result)
    lines = ["## Targets", ""]
    hits = sum(o.top1_of_task for o in result.outcomes)
    verdict = "met" if rate >= TARGET_TOP1 else "**not met**"
    lines.append(
        f"- Top result of the user's task: {hits} of {len(result.outcomes)} users "
        f"({100 * rate:.0f} %; target ≥ 80 %): {verdict}."
    )
    r50 = ratios(result, 50)
    if r50:
        better, worse, equal = wins(result, 50)
        mean_ratio = float(np.mean(r50))
        verdict = "met" if mean_ratio < 1 else "**not met**"
        lines.append(
            f"- With 50 labels, hetero reuse against training from scratch: mean error ratio "
            f"over users {mean_ratio:.3f} (below 1: reuse better; target: below 1; errors under "
            f"{RATIO_FLOOR:g} count as {RATIO_FLOOR:g}): {verdict}. "
            f"Better for {better} users, worse for {worse}, equal for {equal}."
        )
    exact = ratios(result, 50, TRUE_COLUMNS)
    if exact:
        better, worse, equal = wins(result, 50, TRUE_COLUMNS)
        lines.append(
            f"- The same top-1 learnwares given the user's rows through the true column "
            f"correspondence instead of the alignment (each column the user lacks at its mean; "
            f"the alignment may guess those better): mean error ratio {np.mean(exact):.3f} at 50 "
            f"labels; better for {better} users, worse for {worse}, equal for {equal}."
        )
    return "\n".join(lines)


def search_table(result: ExperimentResult) -> str:
    rows = []
    market = next((b for b in result.budgets if b.epochs < 0), None)
    for i, o in enumerate(result.outcomes):
        s = split(o.user.dataset)
        named = ", ".join(f"{x['key']} ({x['mmd2']:.3f})" for x in o.singles[:3]) or "nothing"
        rows.append(
            [
                o.user.key,
                f"{len(o.user.columns)} ({len(o.user.new_columns)} new of {len(s.new_columns)})",
                f"{o.n_pool} / {o.n_test}",
                named,
                "yes" if o.top1_of_task else "**no**",
                str(market.task_rank[i]) if market and market.task_rank else "—",
                f"{1e3 * o.search_seconds:.0f} ms",
            ]
        )
    return _table(
        [
            "user",
            "columns (new)",
            "pool / test rows",
            "top 3 (MMD² in the shared space)",
            "top-1 of task",
            "rank of the task's best (scan)",
            "search",
        ],
        rows,
    )


def error_table(result: ExperimentResult) -> str:
    ns = label_counts(result)
    header = ["user", "unit", f"{MEAN_TASK} (0)", f"{BEST_TASK} (0)"]
    for n in ns:
        header += [f"hetero {n}"] + ([f"scratch {n}"] if n else [])
    header += ["true columns 0", "true columns 50"]
    rows = []
    for o in result.outcomes:
        row = [o.user.key, _unit(o.user.dataset)]
        row += [_fmt(o.zero_label.get(MEAN_TASK)), _fmt(o.zero_label.get(BEST_TASK))]
        for n in ns:
            a = error_at(o, HETERO, n)
            if n == 0:
                row.append(_fmt(a))
                continue
            b = error_at(o, SCRATCH, n)
            better = a is not None and b is not None and a < b
            row += [f"**{_fmt(a)}**" if better else _fmt(a), _fmt(b)]
        row += [_fmt(error_at(o, TRUE_COLUMNS, 0)), _fmt(error_at(o, TRUE_COLUMNS, 50))]
        rows.append(row)
    return _table(header, rows)


def dataset_table(result: ExperimentResult) -> str:
    ns = label_counts(result)
    header = ["data set", "users", "unit", MEAN_TASK, *(f"hetero / scratch {n}" for n in ns)]
    rows = []
    for d in datasets_of(result):
        users = [o for o in result.outcomes if o.user.dataset == d]
        row = [d, str(len(users)), _unit(d)]
        row.append(_fmt(float(np.mean([o.zero_label[MEAN_TASK] for o in users]))))
        for n in ns:
            a = [error_at(o, HETERO, n) for o in users]
            b = [error_at(o, SCRATCH, n) for o in users] if n else [None] * len(users)
            a_ok = [x for x in a if x is not None]
            if not a_ok:
                row.append("—")
            elif n == 0:
                row.append(_fmt(float(np.mean(a_ok))))
            else:
                pairs = [
                    (x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None
                ]
                row.append(
                    f"{np.mean([x for x, _ in pairs]):.1f} / {np.mean([y for _, y in pairs]):.1f}"
                    if pairs
                    else "—"
                )
        rows.append(row)
    return _table(header, rows)


def budget_table(result: ExperimentResult) -> str:
    rows = []
    n = len(result.outcomes)
    for b in result.budgets:
        fifty = [x for x in b.fifty if x is not None]
        scratch = [
            error_at(o, SCRATCH, 50)
            for o, x in zip(result.outcomes, b.fifty, strict=True)
            if x is not None
        ]
        mean_ratio = (
            np.mean([ratio(x, y) for x, y in zip(fifty, scratch, strict=True)]) if fifty else None
        )
        if b.epochs < 0:
            name = "the market's map (downloaded)"
        elif b.epochs == 0:
            name = "untrained (seeded initial weights)"
        else:
            name = f"{b.epochs} epochs" + (
                " (the market's default, trained here)" if b.epochs == result.map_epochs else ""
            )
        rows.append(
            [
                name,
                str(b.steps),
                f"{b.train_seconds:.1f} s",
                "—" if b.final_loss is None else f"{b.final_loss:.3f}",
                f"{sum(b.top1_task)}/{n}",
                f"{sum(b.top1_task_untagged)}/{n}",
                f"{np.mean(b.zero_label):.1f}",
                "—" if mean_ratio is None else f"{mean_ratio:.3f}",
                *(f"{b.top1_by_gamma.get(g, 0)}/{n}" for g in GAMMAS[1:]),
            ]
        )
    return _table(
        [
            "map",
            "steps",
            "training",
            "final loss",
            "top-1 of task (Task tag)",
            "top-1 of task (no tag)",
            "0 labels: mean error",
            "50 labels: mean ratio to scratch",
            *(f"top-1 of task, γ = {g:g}" for g in GAMMAS[1:]),
        ],
        rows,
    )


def not_helping(result: ExperimentResult) -> str:
    """Where it does not help, read from the numbers of this run."""
    lines = ["## Where it does not help", ""]
    wrong = [o for o in result.outcomes if not o.top1_of_task]
    market = next((b for b in result.budgets if b.epochs < 0), None)
    if wrong:
        untagged = (
            f" Without the Task tag (the scan with the market's map), "
            f"{sum(market.top1_task_untagged)} of {len(result.outcomes)} users would get a "
            "learnware of their data set first."
            if market is not None
            else ""
        )
        lines.append(
            f"- **The search** put a learnware of another data set first for {len(wrong)} of "
            f"{len(result.outcomes)} users: "
            + "; ".join(f"{o.user.key} → {o.top1_key}" for o in wrong)
            + "."
            + untagged
        )
    if market is not None and market.top1_by_gamma:
        by_data: dict[str, list[float]] = {}
        for key, value in result.self_terms.items():
            by_data.setdefault(key.rsplit("-", 2)[0], []).append(value)
        selfs = ", ".join(f"{d} {np.mean(v):.3f}" for d, v in by_data.items())
        lo, hi = result.mapped_norms
        sweep = ", ".join(
            f"γ = {g:g}: {c}/{len(result.outcomes)}" for g, c in market.top1_by_gamma.items()
        )
        scale = getattr(getattr(result, "map_config", None), "output_scale", None)
        lines.append(
            f"- **What the search ranks by.** Every mapped point has a norm between {lo:.2f} "
            f"and {hi:.2f} (the encoder ends in a layer norm, so its rows have norm √128 = 11.31"
            + (f", times the map's output scale {scale:.3g}" if scale is not None else "")
            + "): the points lie on one sphere. MMD² = ⟨user, user⟩ + ⟨lw, lw⟩ − 2⟨user, lw⟩; "
            "where the kernel is narrow against the distances on that sphere, the learnware's "
            "self term ⟨lw, lw⟩ (how tightly its points gather) outweighs the cross term, and a "
            "learnware whose points spread wide is near every user (a hub). Mean self term per "
            f"data set: {selfs}. The same mapped specs ranked with other kernel widths put a "
            f"learnware of the user's data set first for: {sweep} users (the market's map, Task "
            f"tag; a diagnostic on these {len(result.outcomes)} users, not a tuned setting)."
        )
    zero_worse = [
        o
        for o in result.outcomes
        if o.zero_label.get(HETERO) is not None and o.zero_label[HETERO] > o.zero_label[MEAN_TASK]
    ]
    lines.append(
        f"- **With no label** the aligned top-1 is worse than the mean aligned learnware of the "
        f"user's task for {len(zero_worse)} of {len(result.outcomes)} users. Zero-label "
        "alignment has to guess which of the user's columns is which of the learnware's from "
        "the descriptions read through the map and the MMD between the two distributions; "
        "standardised columns all look alike to the MMD."
    )
    for n in result.scale.labels:
        better, worse, equal = wins(result, n)
        if better + worse + equal:
            r = ratios(result, n)
            lines.append(
                f"- **{n} labels**: hetero reuse is better than training from scratch for "
                f"{better} users, worse for {worse}, equal for {equal} (mean error ratio "
                f"{np.mean(r):.3f})."
            )
    exact_zero = [
        (o, a, b)
        for o in result.outcomes
        if (a := error_at(o, TRUE_COLUMNS, 0)) is not None
        and (b := error_at(o, SCRATCH, 50)) is not None
    ]
    if exact_zero:
        behind = [o for o, a, b in exact_zero if a > b]
        trained = [len(split(d).dev_rows) for d in datasets_of(result)]
        tests = [o.n_test for o in result.outcomes]
        lines.append(
            f"- **What the learnwares know beyond 50 labels.** Even through the true column "
            f"correspondence, the top-1 with no label is worse than training from scratch on 50 "
            f"labels for {len(behind)} of {len(exact_zero)} users; with 50 labels, FeatureAugment "
            f"over it gives a mean error ratio of {np.mean(ratios(result, 50, TRUE_COLUMNS)):.3f} "
            f"(the aligned top-1: {np.mean(ratios(result, 50)):.3f}). These tables are small and "
            f"close to linear, and each learnware was trained on {min(trained)} to "
            f"{max(trained)} rows: 50 labels teach a linear model on the user's own columns "
            "about what the learnware knows, so what is left to gain at 50 labels is within the "
            f"noise of test sets of {min(tests)} to {max(tests)} rows, whatever the alignment."
        )
    lines.append(
        "- What the labelled numbers measure is mostly FeatureAugment's final model on the "
        "user's own columns: with an aligned learnware whose outputs carry little information, "
        "it falls back to what training from scratch does, so the two stay close."
    )
    return "\n".join(lines)


SETUP = """\
## Set-up

**Data.** scikit-learn's bundled tables, read from the files inside the installed package
(nothing is downloaded): breast cancer (569 × 30, benign or malignant), wine (178 × 13, three
cultivars), diabetes (442 × 10 in original units, progression after a year: regression) and iris
(150 × 4, three species). Each column has two honest descriptions (what it is, how it is
measured, its unit, or "unit not stated by the source" where the source gives none): the
developers' wording and another wording, the users' (`datasets.py`). Every column is
standardised with the data set's published mean and standard deviation (of the developers'
rows), and both descriptions say so.

**Who holds what** (`design.py`). Each data set's rows are cut into the developers' 40 % and the
users' 60 %, never shared. A few columns of each data set (breast cancer 4, wine 2, diabetes 1,
iris 0) are held by no learnware. A learnware takes 50–75 % of the other columns (iris: three of
four), a bootstrap of the developers' rows, and is a logistic regression or ridge, or a
one-hidden-layer MLP; its semantic spec describes every input column (`Input.Description`). A
user takes 45–70 % of the developers' columns plus some of the new ones, in a shuffled order,
described in the users' wording; it holds all the users' rows: a labelled pool (at most 100)
and the test rows.

**Through the service.** A `LocalMarket` (API, Celery workers, SQLite, file broker, local
store); every package is submitted and checked in the sandbox; the admin asks for a map
(`POST /v1/hetero/maps`) with the market's default settings and waits until it is current; each
user fits an RKME (K = 50, γ = 0.1) of all its rows, unlabelled, and searches with its described
columns and its Task tag (`WharfClient.search(..., hetero=True)`); the top result is loaded with
`reuse.from_search` and the map it names, downloaded with `download_hetero_map`.

**Scoring.** Errors on the user's test rows: error rate in % (classification) or RMSE in the
diabetes target's units. *Hetero reuse, 0 labels*: `HeteroMapAlign` aligns the user's columns
to the top-1's on all the user's unlabelled rows and predicts. *n labels*: FeatureAugment over
that aligned learnware (what `HeteroMapAlign.fit(X, y)` adds), fit on n pool rows, mean over
label draws; *from scratch*: FeatureAugment's final model on the same n labels without the
learnware. *Mean / best learnware of the task*: every learnware of the user's data set aligned
the same way, no labels. The aligned learnware runs once, in the sandbox, on all of the user's
rows; the labelled fits read its outputs from then on.

**Training budgets** (in this process, after the market is stopped): the same accepted specs
and descriptions, maps trained for other numbers of epochs with the market's seed (0: the
untrained map, its seeded initial weights), each used for the same users: top-1 of a scan by
MMD² in the shared space (what the market's search ranks by; with the Task tag, as the users
search, and without), and the reuse of that top-1 (learnwares run in process: numpy only).
"""


def markdown(
    result: ExperimentResult, *, command: str, date: str, machine: str, total: float
) -> str:
    s = result.scale
    parts = [
        "# Heterogeneous market: users whose columns differ",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        f"- machine: {machine}",
        f"- scale: {'quick' if s.quick else 'full'}: {len(result.learnwares)} learnwares, "
        f"{len(result.outcomes)} users, labels {', '.join(map(str, s.labels))}, "
        f"{len(s.seeds)} label draws each, alignment {s.align_epochs} steps",
        f"- learnwares run {'in the sandbox' if result.sandboxed else 'in process'}",
        f"- the market's map: version {result.map_info.get('version')}, "
        f"{result.map_info.get('epochs')} epochs, {result.map_info.get('steps')} steps on "
        f"{result.map_info.get('tables')} learnwares, {result.map_info.get('seconds')} s on the "
        f"worker; trained again here with the same settings, its weights differ from it by at "
        f"most {result.map_difference:.2g}",
        f"- total {total:.0f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()),
        "",
        summary(result),
        "",
        not_helping(result),
        "",
        "## Search",
        "",
        search_table(result),
        "",
        "## Errors per user",
        "",
        "Hetero reuse in bold where it beats training from scratch on the same labels.",
        "",
        error_table(result),
        "",
        "## Per data set (mean over its users)",
        "",
        dataset_table(result),
        "",
        f"![error against labels]({CURVES_PLOT})",
        "",
        "## Training budget of the map",
        "",
        budget_table(result),
        "",
        f"![training budget]({BUDGET_PLOT})",
        "",
        SETUP,
    ]
    return "\n".join(parts)


def plot_curves(result: ExperimentResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = datasets_of(result)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), dpi=110)
    axes = np.atleast_1d(axes)
    for ax, d in zip(axes, names, strict=True):
        users = [o for o in result.outcomes if o.user.dataset == d]
        ns = [n for n in result.scale.labels if any(error_at(o, SCRATCH, n) for o in users)]
        for method, style in ((HETERO, "s-"), (SCRATCH, "^--"), (TRUE_COLUMNS, "o:")):
            ys = [
                np.mean([v for o in users if (v := error_at(o, method, n)) is not None]) for n in ns
            ]
            ax.plot(ns, ys, style, label=method)
        for method, ls in ((HETERO, ":"), (MEAN_TASK, "-.")):
            level = np.mean([o.zero_label[method] for o in users if method in o.zero_label])
            ax.axhline(level, color="grey", linestyle=ls, linewidth=1, label=f"{method}, 0 labels")
        ax.set_xscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("labelled examples")
        ax.set_ylabel(_unit(d))
        ax.set_title(f"{d}: mean over {len(users)} users", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_budgets(budgets: list[BudgetOutcome], result: ExperimentResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [b for b in budgets if b.epochs >= 0]
    xs = [max(b.steps, 0.5) for b in budgets]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    left.plot(xs, [100 * np.mean(b.top1_task) for b in budgets], "o-", label="with the Task tag")
    left.plot(xs, [100 * np.mean(b.top1_task_untagged) for b in budgets], "s--", label="no tag")
    left.axhline(100 * TARGET_TOP1, color="grey", linestyle=":", label="target")
    left.set_ylabel("top-1 of the user's task, % of users")
    ratio_line = []
    for b in budgets:
        pairs = [
            (x, error_at(o, SCRATCH, 50))
            for o, x in zip(result.outcomes, b.fifty, strict=True)
            if x is not None
        ]
        ratio_line.append(np.mean([ratio(x, y) for x, y in pairs]) if pairs else np.nan)
    right.plot(xs, ratio_line, "o-")
    right.axhline(1.0, color="grey", linewidth=1)
    right.set_ylabel("50 labels: error / from scratch (mean)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("training steps (0 plotted at 0.5: untrained)")
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

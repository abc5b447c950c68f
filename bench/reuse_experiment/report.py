"""Tables, plots and the results file of the experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .experiment import CURVE_METHODS, TABLE_METHODS, ExperimentResult, UserOutcome
from .tasks import CLASSIFICATION, REGRESSION

UNIT = {CLASSIFICATION: "error rate, %", REGRESSION: "RMSE, units sold"}
TITLE = {CLASSIFICATION: "Classification (digits)", REGRESSION: "Regression (store sales)"}
PLOT_FILE = {CLASSIFICATION: "curve_classification.png", REGRESSION: "curve_regression.png"}


def _fmt(value: float, task: str) -> str:
    return f"{value:.1f}" if task == CLASSIFICATION else f"{value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def by_task(result: ExperimentResult, task: str) -> list[UserOutcome]:
    return [o for o in result.outcomes if o.user.task == task]


def method_table(outcomes: list[UserOutcome], task: str) -> str:
    """The reference's table: one row per user and the mean over users."""
    rows = [[o.user.key, *(_fmt(o.errors[m], task) for m in TABLE_METHODS)] for o in outcomes]
    means = [float(np.mean([o.errors[m] for o in outcomes])) for m in TABLE_METHODS]
    rows.append(["**mean over users**", *(f"**{_fmt(v, task)}**" for v in means)])
    return _table(["user", *TABLE_METHODS], rows)


def curve_points(outcomes: list[UserOutcome]) -> dict[str, dict[int, tuple[float, int]]]:
    """method -> labels -> (mean over the users whose pool allows it of their seed-mean,
    number of those users)."""
    out: dict[str, dict[int, tuple[float, int]]] = {}
    for method in CURVE_METHODS:
        ns = sorted({n for o in outcomes for n in o.curves.get(method, {})})
        out[method] = {}
        for n in ns:
            per_user = [
                float(np.mean(o.curves[method][n])) for o in outcomes if n in o.curves[method]
            ]
            out[method][n] = (float(np.mean(per_user)), len(per_user))
    return out


def wins(outcomes: list[UserOutcome], method: str, other: str, n: int) -> tuple[int, int]:
    """In how many (user, seed) draws of ``n`` labels ``method`` beat ``other`` (ties: no)."""
    won = total = 0
    for o in outcomes:
        a, b = o.curves.get(method, {}).get(n), o.curves.get(other, {}).get(n)
        if a is None or b is None:
            continue
        won += sum(x < y for x, y in zip(a, b, strict=True))
        total += len(a)
    return won, total


def curve_table(outcomes: list[UserOutcome], task: str) -> str:
    points = curve_points(outcomes)
    ns = sorted(points[CURVE_METHODS[0]])
    rows = []
    for n in ns:
        users = points[CURVE_METHODS[0]][n][1]
        won, total = wins(outcomes, "FeatureAugment", "From scratch", n)
        rows.append(
            [
                str(n),
                str(users),
                *(_fmt(points[m][n][0], task) for m in CURVE_METHODS),
                f"{won}/{total}",
            ]
        )
    return _table(["labels", "users", *CURVE_METHODS, "FeatureAugment beats scratch (draws)"], rows)


def per_user_curves(outcomes: list[UserOutcome], task: str) -> str:
    """Each user's seed-mean error: EnsemblePruning / FeatureAugment / from scratch."""
    ns = sorted({n for o in outcomes for n in o.curves.get(CURVE_METHODS[0], {})})
    rows = []
    for o in outcomes:
        cells = []
        for n in ns:
            if n not in o.curves[CURVE_METHODS[0]]:
                cells.append("")
                continue
            cells.append(
                " / ".join(_fmt(float(np.mean(o.curves[m][n])), task) for m in CURVE_METHODS)
            )
        rows.append([o.user.key, _fmt(o.errors["Top-1 reuse"], task), *cells])
    return _table(["user", "Top-1 (0 labels)", *(f"{n} labels" for n in ns)], rows)


def ratio_points(outcomes: list[UserOutcome]) -> dict[str, dict[int, float]]:
    """Geometric mean over users of (method error / from-scratch error) at each label count;
    "Top-1 reuse" uses its label-free error. Scale-free, so no user dominates."""
    out: dict[str, dict[int, float]] = {}
    ns = sorted({n for o in outcomes for n in o.curves.get("From scratch", {})})
    for method in ("EnsemblePruning", "FeatureAugment", "Top-1 reuse"):
        out[method] = {}
        for n in ns:
            logs = []
            for o in outcomes:
                scratch = o.curves.get("From scratch", {}).get(n)
                if not scratch:
                    continue
                base = max(float(np.mean(scratch)), 1e-9)
                if method == "Top-1 reuse":
                    value = o.errors[method]
                else:
                    value = float(np.mean(o.curves[method][n]))
                logs.append(np.log(max(value, 1e-9) / base))
            out[method][n] = float(np.exp(np.mean(logs)))
    return out


def detail_table(outcomes: list[UserOutcome], task: str) -> str:
    rows = []
    for o in outcomes:
        top = o.singles[0]
        mix = "—"
        if o.mixture:
            mix = " + ".join(
                f"{k} ({w:.2f})"
                for k, w in zip(o.mixture["keys"], o.mixture["weights"], strict=True)
            )
        expected = "—"
        if o.user.exact:
            expected = "yes" if o.top1_key in o.user.exact else f"**no** (wanted {o.user.exact[0]})"
        elif o.user.spans:
            got = set(o.mixture["keys"]) if o.mixture else set()
            expected = "yes" if set(o.user.spans) <= got else "**no**"
        rows.append(
            [
                o.user.key,
                o.user.story,
                f"{o.n_test} / {o.n_pool}",
                f"{top['key']} ({top['mmd2']:.4f}, {top['similarity']:.3f})",
                mix,
                expected,
                f"{o.best_key} ({_fmt(o.errors['Best in market'], task)})",
            ]
        )
    return _table(
        [
            "user",
            "data",
            "test / pool",
            "top-1 (MMD², similarity)",
            "mixture (weights)",
            "found what it should",
            "best in market (error)",
        ],
        rows,
    )


def plot_curves(outcomes: list[UserOutcome], task: str, path: Path) -> None:
    """Left: mean error over users. Right: geometric mean over users of the error relative
    to training from scratch on the same labels (below 1: reuse is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    points = curve_points(outcomes)
    ratios = ratio_points(outcomes)
    ns = sorted(points[CURVE_METHODS[0]])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3), dpi=110)
    styles = {
        "EnsemblePruning": "o-",
        "FeatureAugment": "s-",
        "From scratch": "^--",
        "Top-1 reuse": "k:",
    }
    for method in CURVE_METHODS:
        left.plot(ns, [points[method][n][0] for n in ns], styles[method], label=method)
    for name, ls in (("Top-1 reuse", ":"), ("Averaging", "-.")):
        level = float(np.mean([o.errors[name] for o in outcomes]))
        left.axhline(level, color="grey", linestyle=ls, linewidth=1, label=f"{name} (no labels)")
    for method, curve in ratios.items():
        label = f"{method} (no labels)" if method == "Top-1 reuse" else method
        right.plot(ns, [curve[n] for n in ns], styles[method], label=label)
    right.axhline(1.0, color="grey", linewidth=1)
    all_users = len(outcomes)
    partial = [n for n in ns if points[CURVE_METHODS[0]][n][1] < all_users]
    note = ""
    if partial:
        counts = ", ".join(f"{points[CURVE_METHODS[0]][n][1]} at {n}" for n in partial)
        note = f"\n(users whose pool allows it: {counts}; {all_users} elsewhere)"
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(ns)
        ax.set_xticklabels([str(n) for n in ns])
        ax.minorticks_off()
        ax.set_xlabel("labelled examples" + note)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    right.set_yscale("log")
    plain = matplotlib.ticker.FormatStrFormatter("%.2g")
    right.yaxis.set_major_formatter(plain)
    right.yaxis.set_minor_formatter(plain)
    left.set_ylabel(UNIT[task])
    left.set_title(f"{TITLE[task]}: mean over {all_users} users", fontsize=10)
    right.set_ylabel("error / from-scratch error (geometric mean)")
    right.set_title("relative to training from scratch on the same labels", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


SETUP = """\
## Set-up

**Market.** Digit classifiers are trained on one half of scikit-learn's *digits* (pixels / 16),
each on a class subset (0-4, 5-9, even, odd, 0-9) written by one simulated *writer*: clean,
faint pen (ink × 0.55), heavy pen (ink × 1.6, clipped), 3×3 blur, a one-pixel shift, 30 %
pixel dropout, or inverted. Sales regressors are trained on 1,500 days of one of ten stores
of a seeded generator (price, promotion, temperature, weekday, holiday, footfall, size,
competitor distance, advertising → units sold; one nonlinear law, stores differ in where their
days lie; features standardised with the schema's fixed constants). Families: multinomial
logistic regression or ridge, and a one-hidden-layer MLP (64 ReLU units), all exported as
`.npz` weight matrices with a numpy `predict` in the package; each package carries an RKME
(100 points, γ = 0.1) and a full semantic specification (Output.Dimension 10 or 1).

**Users** draw from the other half of *digits* (or new days of a store) with their own
writer and classes; each holds a test set and a pool to label. They search with a semantic
requirement (Table + Classification or Regression) and their RKME.

**Columns.** *Mean in market* / *Best in market*: the average / the lowest error of every
market learnware of the user's task on the user's test set (the best is an oracle).
*Top-1 reuse*: the search's first single. *JobSelector* (herding_num = {herding}) and
*Averaging* (probabilities averaged, or outputs for regression) use no labels and combine the
search's mixture, or its top 3 singles when it returned no mixture. The curves give
*EnsemblePruning* and *FeatureAugment* the mixture's learnwares plus the top 5 singles, and
*From scratch* is the user's own standardised logistic regression (C by stratified CV) or
RidgeCV trained on the same labels — FeatureAugment's final model without the learnwares'
outputs."""

#: Above this top-1 MMD² a user counts as far from everything in the market.
FAR_MMD2 = 0.2
#: Mixture members below this weight count as passengers.
LIGHT_WEIGHT = 0.05


def _beats(outcomes: list[UserOutcome], method: str) -> tuple[list[UserOutcome], list[UserOutcome]]:
    better = [o for o in outcomes if o.errors[method] < o.errors["Mean in market"]]
    return better, [o for o in outcomes if o not in better]


def _why_not(o: UserOutcome, method: str, task: str) -> str:
    reasons = []
    if o.singles[0]["mmd2"] > FAR_MMD2:
        reasons.append(
            f"nothing in the market is near its data (top-1 MMD² {o.singles[0]['mmd2']:.2f}), "
            "so every learnware extrapolates"
        )
    if method == "Averaging" and not o.mixture:
        reasons.append("no mixture came back, so it averaged the top 3 singles")
    if not reasons:
        reasons.append("see the tables")
    ours, mean = _fmt(o.errors[method], task), _fmt(o.errors["Mean in market"], task)
    return f"{o.user.key} ({ours} vs {mean}: {'; '.join(reasons)})"


def _crossover(outcomes: list[UserOutcome], method: str) -> int | None:
    """The fewest labels at which training from scratch is at least as good as ``method``
    by the geometric mean over users of the error ratio (scale-free: one user with large
    errors does not decide it); None if it never is."""
    ratios = ratio_points(outcomes)[method]
    for n in sorted(ratios):
        if ratios[n] >= 1.0:
            return n
    return None


def verdict(result: ExperimentResult) -> list[str]:
    """One line per expectation, over all users."""
    everyone = result.outcomes
    lines = ["**The two expectations, over all users.**", ""]
    parts = []
    for method in ("Top-1 reuse", "Averaging"):
        better, worse = _beats(everyone, method)
        text = f"{method} for {len(better)} of {len(everyone)}"
        if worse:
            text += f" (not {', '.join(o.user.key for o in worse)})"
        parts.append(text)
    lines.append(f"- Beating Mean in market without labels: {'; '.join(parts)}.")
    with_curves = [o for o in everyone if o.curves.get("From scratch")]
    if with_curves:
        n0 = min(min(o.curves["From scratch"]) for o in with_curves)
        counts = []
        for method in ("EnsemblePruning", "FeatureAugment"):
            won = total = 0
            for task in (CLASSIFICATION, REGRESSION):
                w, t = wins(by_task(result, task), method, "From scratch", n0)
                won, total = won + w, total + t
            counts.append(f"{method} wins {won} of {total} draws")
        losers = [
            o.user.key
            for o in with_curves
            if n0 in o.curves["From scratch"]
            and np.mean(o.curves["From scratch"][n0])
            < min(np.mean(o.curves[m][n0]) for m in ("EnsemblePruning", "FeatureAugment"))
        ]
        line = f"- Reuse against training from scratch with {n0} labels: {'; '.join(counts)}"
        if losers:
            line += (
                f". Users for whom training from scratch beats both on average: "
                f"{', '.join(losers)} (see below)"
            )
        lines.append(line + ".")
    lines.append("")
    return lines


def discussion(result: ExperimentResult) -> str:
    """What the numbers say about the expectations, computed from them."""
    lines: list[str] = verdict(result)
    for task in (CLASSIFICATION, REGRESSION):
        outcomes = by_task(result, task)
        if not outcomes:
            continue
        word = "classification" if task == CLASSIFICATION else "regression"
        lines.append(f"**{TITLE[task]}.**")
        lines.append("")
        for method in ("Top-1 reuse", "Averaging", "JobSelector"):
            better, worse = _beats(outcomes, method)
            line = (
                f"- {method} beats Mean in market for {len(better)} of {len(outcomes)} {word} users"
            )
            if worse:
                line += "; not for " + ", ".join(_why_not(o, method, task) for o in worse)
            lines.append(line + ".")
        exact = [o for o in outcomes if o.user.exact]
        hits = [o for o in exact if o.top1_key in o.user.exact]
        if exact:
            line = (
                f"- Users whose writer or store one learnware was trained on: the search's top-1 "
                f"is that learnware for {len(hits)} of {len(exact)}"
            )
            top_is_best = [
                o for o in exact if o.errors["Top-1 reuse"] <= o.errors["Best in market"] + 1e-9
            ]
            line += (
                f"; its error equals that of the best learnware in the market for "
                f"{len(top_is_best)}."
            )
            lines.append(line)
        spans = [o for o in outcomes if o.user.spans]
        if spans:
            found = [o for o in spans if o.mixture and set(o.user.spans) <= set(o.mixture["keys"])]
            gains = [
                o.user.key
                for o in spans
                if min(o.errors["JobSelector"], o.errors["Averaging"]) < o.errors["Top-1 reuse"]
            ]
            lines.append(
                f"- Users whose data spans two learnwares: the mixture holds both for "
                f"{len(found)} of {len(spans)}; combining (JobSelector or Averaging) beats the "
                f"top-1 alone for {len(gains)} of them ({', '.join(gains) or 'none'})."
            )
        for o in outcomes:
            light = []
            if o.mixture:
                light = [
                    f"{k} ({w:.2f})"
                    for k, w in zip(o.mixture["keys"], o.mixture["weights"], strict=True)
                    if w < LIGHT_WEIGHT
                ]
            if light and o.errors["Averaging"] > o.errors["Top-1 reuse"]:
                lines.append(
                    f"- {o.user.key}: Averaging ({_fmt(o.errors['Averaging'], task)}) is worse "
                    f"than the top-1 ({_fmt(o.errors['Top-1 reuse'], task)}) because it gives "
                    f"every mixture member an equal vote, ignoring the mixture weights: "
                    f"{', '.join(light)} counts as much as the main member. JobSelector, which "
                    f"routes each row to one member, gets {_fmt(o.errors['JobSelector'], task)}."
                )
            if not o.mixture and o.errors["Averaging"] > o.errors["Top-1 reuse"]:
                lines.append(
                    f"- {o.user.key}: no mixture came back (one learnware explains the data), so "
                    f"the data-free methods got the top 3 singles ({', '.join(o.data_free_keys)}"
                    f"); Averaging them gives {_fmt(o.errors['Averaging'], task)} against "
                    f"{_fmt(o.errors['Top-1 reuse'], task)} for the top-1 alone."
                )
            if (
                len(o.singles) > 1
                and abs(o.singles[0]["mmd2"] - o.singles[1]["mmd2"]) < 1e-9
                and o.best_key != o.top1_key
            ):
                lines.append(
                    f"- {o.user.key}: {o.singles[0]['key']} and {o.singles[1]['key']} were "
                    f"trained on the same days, so their RKMEs are identical and the search "
                    f"cannot tell them apart (it describes data, not models); the top-1 is the "
                    f"one listed first, while {o.best_key} is better "
                    f"({_fmt(o.errors['Best in market'], task)} vs "
                    f"{_fmt(o.errors['Top-1 reuse'], task)})."
                )
        far = [o for o in outcomes if o.singles[0]["mmd2"] > FAR_MMD2]
        near = [o for o in outcomes if o not in far]
        if far and near:
            lowest = min(o.singles[0]["similarity"] for o in near)
            shown = ", ".join(
                f"{o.user.key} (MMD² {o.singles[0]['mmd2']:.2f}, similarity "
                f"{o.singles[0]['similarity']:.2f})"
                for o in far
            )
            lines.append(
                f"- The search itself warns when the market holds nothing close: {shown}, "
                f"against MMD² ≤ {max(o.singles[0]['mmd2'] for o in near):.2f} and similarity "
                f"≥ {lowest:.2f} for the other {word} users."
            )
        points = curve_points(outcomes)
        if points["From scratch"]:
            n0 = min(points["From scratch"])
            values = ", ".join(
                f"{m} {_fmt(points[m][n0][0], task)}" for m in ("From scratch", *CURVE_METHODS[:2])
            )
            top = max(points["From scratch"])
            ratios = ratio_points(outcomes)
            relative = ", ".join(f"{m} {ratios[m][n0]:.2f}" for m in CURVE_METHODS[:2])
            catch = []
            for method in ("EnsemblePruning", "FeatureAugment"):
                cross = _crossover(outcomes, method)
                catch.append(f"{method} {cross}" if cross else f"{method} not within {top}")
            lines.append(
                f"- With {n0} labels, mean over users: {values}; error relative to from "
                f"scratch (geometric mean over users): {relative}. Labels at which training "
                f"from scratch catches up (by that ratio): {', '.join(catch)}."
            )
            top1 = float(np.mean([o.errors["Top-1 reuse"] for o in outcomes]))
            if points["FeatureAugment"][n0][0] > top1:
                lines.append(
                    f"- FeatureAugment has to learn from the labels how to use the learnwares' "
                    f"outputs (its final model is fitted on features plus outputs), so with "
                    f"{n0} labels it is still worse than Top-1 reuse, which needs none "
                    f"({_fmt(points['FeatureAugment'][n0][0], task)} against "
                    f"{_fmt(top1, task)}); EnsemblePruning starts from the learnwares' own "
                    f"predictions."
                )
            won, total = wins(outcomes, "FeatureAugment", "From scratch", n0)
            won_ep, _ = wins(outcomes, "EnsemblePruning", "From scratch", n0)
            lines.append(
                f"- Per draw of {n0} labels: FeatureAugment beats from-scratch in {won} of "
                f"{total}, EnsemblePruning in {won_ep} of {total}."
            )
            stuck = [
                o.user.key
                for o in outcomes
                if o.curves["EnsemblePruning"]
                and min(float(np.mean(v)) for v in o.curves["EnsemblePruning"].values())
                > min(float(np.mean(v)) for v in o.curves["From scratch"].values())
            ]
            if stuck:
                lines.append(
                    "- EnsemblePruning can only choose among the learnwares the search found; "
                    "with enough labels a model of the user's own data does better for "
                    + ", ".join(stuck)
                    + "."
                )
        lines.append("")
    return "\n".join(lines)


def markdown(
    result: ExperimentResult, *, command: str, date: str, machine: str, total: float
) -> str:
    n_lw = {
        t: sum(1 for b in result.learnwares.values() if b.definition.task == t)
        for t in (CLASSIFICATION, REGRESSION)
    }
    parts = [
        "# Reusing learnwares found by a Wharf market",
        "",
        f"- command: `{command}`",
        f"- date: {date}",
        f"- machine: {machine}",
        f"- run time: {total:.0f} s wall clock in all (stages below); the experiment's process "
        "ran torch and BLAS on one thread",
        f"- market: `LocalMarket` (API + 2 Celery workers, SQLite, local store, filesystem "
        f"broker); {len(result.learnwares)} learnwares submitted and checked in the sandbox "
        f"({n_lw[CLASSIFICATION]} digit classifiers, {n_lw[REGRESSION]} sales regressors), "
        f"{sum(s == 'accepted' for s in result.statuses.values())} accepted",
        f"- users: {len(result.outcomes)}; each searched with an RKME (100 points, γ = 0.1) of "
        f"its own test set and unlabelled pool, `top=5` ({result.search_seconds:.1f} s for "
        "all the searches, queueing included)",
        f"- learnwares run {'sandboxed (bubblewrap)' if result.sandboxed else 'in-process'}: "
        f"{result.sandbox_runs} runs, {result.sandbox_seconds:.1f} s — each learnware once, on "
        "every user row of its task, outputs cached",
        f"- label curves: {', '.join(map(str, result.scale.labels))} labels where the pool "
        f"allows, seeds {', '.join(map(str, result.scale.seeds))}",
        "",
    ]
    parts += [SETUP.format(herding=result.scale.herding_num), ""]
    for task in (CLASSIFICATION, REGRESSION):
        outcomes = by_task(result, task)
        if not outcomes:
            continue
        parts += [
            f"## {TITLE[task]} — {UNIT[task]}",
            "",
            method_table(outcomes, task),
            "",
            "What each search found:",
            "",
            detail_table(outcomes, task),
            "",
        ]
        if any(o.curves for o in outcomes):
            points = curve_points(outcomes)
            partial = [
                f"{points['From scratch'][n][1]} users at {n} labels"
                for n in sorted(points["From scratch"])
                if points["From scratch"][n][1] < len(outcomes)
            ]
            caveat = ""
            if partial:
                caveat = (
                    f" Only the users whose pool is big enough count at the largest label "
                    f"counts ({', '.join(partial)}), so those means are over fewer, different "
                    f"users; the plot's right panel compares each user with itself."
                )
            parts += [
                f"Error versus labels ({UNIT[task]}; mean over users of the mean over "
                f"seeds).{caveat}",
                "",
                f"![error versus labels]({PLOT_FILE[task]})",
                "",
                curve_table(outcomes, task),
                "",
                "Per user (EnsemblePruning / FeatureAugment / from scratch, mean over seeds):",
                "",
                per_user_curves(outcomes, task),
                "",
            ]
    parts += ["## Discussion", "", discussion(result), "## Time"]
    parts += [
        "",
        _table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in result.timings.items()]),
        "",
    ]
    return "\n".join(parts)


def to_json(result: ExperimentResult) -> dict:
    """Every number of the run as plain data."""
    return {
        "timings": result.timings,
        "learnwares": {i: b.definition.key for i, b in result.learnwares.items()},
        "users": [
            {
                "user": o.user.key,
                "task": o.user.task,
                "errors": o.errors,
                "best": o.best_key,
                "singles": o.singles,
                "mixture": o.mixture,
                "data_free": o.data_free_keys,
                "label_set": o.label_keys,
                "curves": {m: {str(n): v for n, v in c.items()} for m, c in o.curves.items()},
            }
            for o in result.outcomes
        ],
    }

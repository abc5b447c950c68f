"""The semantic stage's name matching at its worst, before and after the bounds on text.

A search requirement's name is matched against every tagged learnware's name and description:
by substring, else by ``rapidfuzz.fuzz.partial_ratio`` ≥ 75. Before the bounds, names and
descriptions could be as long as a form field (1 MiB) and the matcher compared them whole, at a
cost that grows faster than the product of the lengths. Now the API refuses a requirement name
over 100 characters and learnware texts over 50 / 10,000, and the matcher compares at most
those prefixes, with rapidfuzz's ``score_cutoff`` (an early exit below 75, the same scores
above it).

Texts are random lowercase letters and spaces, so no name is a substring of anything and every
learnware goes through the fuzzy pass: the worst case. "before" is the old matcher (whole
texts, no cutoff), "after" is :func:`market.scoring.fuzzy_name_matches`; both must select the
same learnwares wherever the texts are within the bounds.

    PYTHONPATH=. python -m bench.fuzzy_bounds
"""

from __future__ import annotations

import argparse
import random
import string
from collections.abc import Sequence

from rapidfuzz import fuzz
from wharf.market.scoring import FUZZY_MIN_SCORE, fuzzy_name_matches
from wharf.specification.semantic import (
    MAX_DESCRIPTION_CHARS,
    MAX_NAME_CHARS,
    MAX_REQUIREMENT_NAME_CHARS,
)

from ._common import median_time, table, timed, write_results

MiB = 1024 * 1024


def ms(seconds: float) -> str:
    return f"{1000 * seconds:,.2f} ms"


def old_matches(name: str, texts: Sequence[tuple[str, str]]) -> list[int]:
    """The matcher as it was: whole texts, no cutoff."""
    exact = [i for i, (n, d) in enumerate(texts) if name in n or name in d]
    if exact:
        return exact
    scored = []
    for i, (n, d) in enumerate(texts):
        score = max(fuzz.partial_ratio(name, n), fuzz.partial_ratio(name, d))
        if score >= FUZZY_MIN_SCORE:
            scored.append((score, i))
    scored.sort(key=lambda sc: sc[0], reverse=True)
    return [i for _, i in scored]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--learnwares", type=int, default=1000, help="market at the bounds")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    alphabet = string.ascii_lowercase + " "

    def text(n: int) -> str:
        return "".join(rng.choices(alphabet, k=n))

    rows = []

    # 1. The reported attack: one 6,000-character name, one 6,000-character description.
    name, texts = text(6000), [("model", text(6000))]
    before, _ = timed(lambda: old_matches(name, texts))
    after = median_time(lambda: fuzzy_name_matches(name, texts), args.repeats)
    rows.append(
        [
            "6,000-char name vs one 6,000-char description (now refused with 422)",
            ms(before),
            ms(after),
            f"{before / after:,.0f}×",
            "n/a (cut to 100 chars)",
        ]
    )

    # 2. At the bounds: every text as long as it may be, a market of them.
    name = text(MAX_REQUIREMENT_NAME_CHARS)
    texts = [(text(MAX_NAME_CHARS), text(MAX_DESCRIPTION_CHARS)) for _ in range(args.learnwares)]
    before = median_time(lambda: old_matches(name, texts), args.repeats)
    after = median_time(lambda: fuzzy_name_matches(name, texts), args.repeats)
    same = old_matches(name, texts) == fuzzy_name_matches(name, texts)
    rows.append(
        [
            f"100-char name vs {args.learnwares:,} learnwares of 50 + 10,000 chars",
            ms(before),
            ms(after),
            f"{before / after:.1f}×",
            "yes" if same else "NO",
        ]
    )

    # 2b. Stored before the bounds: megabyte texts (the old form field's limit), "after" only:
    # "before" is not run, the 6,000 × 6,000 case alone takes seconds.
    name = text(MiB)
    texts = [(text(MiB // 8), text(MiB)) for _ in range(100)]
    after = median_time(lambda: fuzzy_name_matches(name, texts), args.repeats)
    rows.append(
        ["1 MiB name vs 100 learnwares of 128 KiB + 1 MiB chars", "not run", ms(after), "", "n/a"]
    )

    # 3. Typical: a short name, shorter descriptions, some near misses that do match.
    name = "housing price regression"
    texts = [(text(30), text(800)) for _ in range(args.learnwares)]
    for i in range(0, args.learnwares, 50):
        texts[i] = (texts[i][0], texts[i][1][:400] + "housing prise regresion" + texts[i][1][400:])
    before = median_time(lambda: old_matches(name, texts), args.repeats)
    after = median_time(lambda: fuzzy_name_matches(name, texts), args.repeats)
    found = fuzzy_name_matches(name, texts)
    same = old_matches(name, texts) == found
    rows.append(
        [
            f"24-char name vs {args.learnwares:,} learnwares of 30 + 800 chars "
            f"({len(found)} fuzzy matches)",
            ms(before),
            ms(after),
            f"{before / after:.1f}×",
            "yes" if same else "NO",
        ]
    )

    body = table(
        ["case", "before (per search)", "after (per search)", "speed-up", "same matches"], rows
    )
    body += (
        "\n\nOne search worker process, one core. Before: the whole texts, no cutoff; after: "
        "the requirement name's first 100 characters and the learnware texts' first 10,000, "
        "with `score_cutoff=75`. Case 1 is no longer reachable through the API (422), but a "
        "search queued before the bounds, or a learnware stored before them, is still cut. "
        "The machine was shared with other work while this ran (see the load average).\n"
    )
    write_results("fuzzy_bounds", "Fuzzy name matching: worst cases before and after", body)


if __name__ == "__main__":
    main()

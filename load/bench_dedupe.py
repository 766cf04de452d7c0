"""Micro-benchmark of homepage dedupe: duplicate rate before/after, optimal vs greedy score,
and allocations per second, all measured in one run on the same synthetic homepages.

`python -m load.bench_dedupe` prints one run's numbers. Not a test: nothing is asserted.
"Duplicates" are ground truth (the same real-world thing shown twice on one screen), which the
rules only see through ids, entities and offline labels, so labelling misses stay visible.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from dedupe import (
    Allocation,
    CategoryCap,
    Rule,
    SlotItems,
    default_rules,
    evaluate,
    greedy,
    homepage,
    make_catalogue,
    optimal,
    true_duplicates,
)
from dedupe.constants import RECOMMEND_BUCKET_MS

T0_MS = 1_800_000_000_000
SLOTS = ("nearby", "services", "offers", "feed")


def _time(
    run: Callable[..., Allocation], pages: Sequence[list[SlotItems]], rules: Sequence[Rule]
) -> tuple[list[Allocation], float]:
    start = time.perf_counter()
    out = [run(page, rules, now_ms=T0_MS) for page in pages]
    return out, time.perf_counter() - start


def _compare(cat: Any, pages: Sequence[list[SlotItems]], rules: Sequence[Rule]) -> dict[str, Any]:
    shown = sum(len(s.items) for page in pages for s in page)
    before = sum(true_duplicates(cat, page) for page in pages)
    out: dict[str, Any] = {"duplicate_rate_before": before / shown}
    totals: dict[str, list[float]] = {}
    for name, run in (("greedy", greedy), ("optimal", optimal)):
        results, elapsed_s = _time(run, pages, rules)
        after = sum(true_duplicates(cat, r.slots) for r in results)
        kept = sum(len(s.items) for r in results for s in r.slots)
        totals[name] = [r.total_score for r in results]
        out[name] = {
            "duplicate_rate_after": after / shown,
            "duplicates_removed": 1.0 - after / before if before else None,
            "kept_items_per_page": kept / len(pages),
            "allocations_per_s": len(pages) / elapsed_s,
            "strategies": dict(Counter(r.strategy for r in results)),
        }
    g, o = totals["greedy"], totals["optimal"]
    out["score_ratio_optimal_over_greedy"] = sum(o) / sum(g)
    out["pages_where_optimal_beats_greedy"] = sum(b > a + 1e-9 for a, b in zip(g, o, strict=True))
    out["worst_page_ratio"] = min(b / a for a, b in zip(g, o, strict=True) if a > 0)
    out["best_page_ratio"] = max(b / a for a, b in zip(g, o, strict=True) if a > 0)
    return out


def run(
    seed: int = 0,
    homepages: int = 1000,
    per_slot: int = 10,
    overlap: float = 0.6,
    category_cap: int = 6,
) -> dict[str, Any]:
    """Dedupe `homepages` synthetic 4-slot homepages with greedy and optimal; return the numbers."""
    cat = make_catalogue(seed, overlap=overlap)
    precision, recall = evaluate(cat.labels, cat.truth)
    # Users spread over time buckets and locations so pages differ as they do in production.
    pages = [
        homepage(
            cat,
            SLOTS,
            user_id=f"u{u}",
            n=per_slot,
            now_ms=T0_MS + (u % 12) * RECOMMEND_BUCKET_MS,
            lat=cat.centre[0] + ((u * 37) % 41 - 20) * 0.001,
            lng=cat.centre[1] + ((u * 53) % 41 - 20) * 0.001,
        )
        for u in range(homepages)
    ]
    # Warm-up: scipy.optimize is imported lazily on the first solver call.
    optimal(pages[0], [*default_rules(), CategoryCap(k=1)], now_ms=T0_MS)
    rules = default_rules()
    capped = (*rules, CategoryCap(k=category_cap))
    return {
        "seed": seed,
        "homepages": homepages,
        "slots": list(SLOTS),
        "items_per_slot": per_slot,
        "overlap": overlap,
        "catalogue_listings": len(cat.listings),
        "labels": {"precision": precision, "recall": recall},
        "default_rules": _compare(cat, pages, rules),
        f"default_rules+category_cap_{category_cap}": _compare(cat, pages, capped),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

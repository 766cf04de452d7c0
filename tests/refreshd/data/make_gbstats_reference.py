"""Regenerate gbstats_reference.json: gbstats' own numbers for fixed experiment inputs.

gbstats 0.8 pins numpy < 2 and pandas < 2, so it cannot live in the project venv; run this in
a throwaway one and commit the JSON it writes next to itself:

    python3 -m venv /tmp/gbvenv && /tmp/gbvenv/bin/pip install gbstats==0.8.0
    /tmp/gbvenv/bin/python tests/refreshd/data/make_gbstats_reference.py

Inputs are per-variant sufficient statistics (users, Σx, Σx², Σy, Σy², Σxy) built from
seeded synthetic users with the standard library only, so the inputs are reproducible without
gbstats. Each case runs through gbstats' `process_single_metric` (the engine GrowthBook's
back end calls) three times: frequentist relative, frequentist absolute, Bayesian relative,
all with gbstats' defaults (alpha 0.05, improper prior).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("gbstats_reference.json")

# Our metric -> gbstats metric settings; test_expstats checks this table against SPECS.
METRIC_SETTINGS: dict[str, dict[str, Any]] = {
    "refresh_requests": {"statistic_type": "mean", "main_metric_type": "count", "inverse": True},
    "clicks": {"statistic_type": "mean", "main_metric_type": "count", "inverse": False},
    "converted": {"statistic_type": "mean", "main_metric_type": "binomial", "inverse": False},
    "pvctr": {
        "statistic_type": "ratio",
        "main_metric_type": "count",
        "denominator_metric_type": "count",
        "inverse": False,
    },
    "uvctr": {
        "statistic_type": "ratio",
        "main_metric_type": "binomial",
        "denominator_metric_type": "binomial",
        "inverse": False,
    },
}


def poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method; fine for the small rates used here."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def user_xy(metric: str, rng: random.Random, rate: float) -> tuple[int, int]:
    """One synthetic user's (x, y) for `metric`, with `rate` the variant's effect knob."""
    refreshes = poisson(rng, 3.0 * rate)
    impressions = poisson(rng, 6.0)
    clicks = poisson(rng, impressions * 0.08 * rate) if impressions else 0
    clicked, saw = int(clicks > 0), int(impressions > 0)
    return {
        "refresh_requests": (refreshes, 0),
        "clicks": (clicks, 0),
        "converted": (clicked, 0),
        "pvctr": (clicks, impressions),
        "uvctr": (clicked * saw, saw),
    }[metric]


def sums(pairs: list[tuple[int, int]]) -> dict[str, int]:
    return {
        "users": len(pairs),
        "sum_x": sum(x for x, _ in pairs),
        "sum_x2": sum(x * x for x, _ in pairs),
        "sum_y": sum(y for _, y in pairs),
        "sum_y2": sum(y * y for _, y in pairs),
        "sum_xy": sum(x * y for x, y in pairs),
    }


def synthetic(
    name: str,
    metric: str,
    users: list[int],
    rates: list[float],
    seed: int,
    weights: list[float] | None = None,
) -> dict[str, Any]:
    rng = random.Random(seed)
    variants = []
    for i, (n, r) in enumerate(zip(users, rates, strict=True)):
        v = sums([user_xy(metric, rng, r) for _ in range(n)])
        variants.append({"key": f"v{i}", **v})
    k = len(users)
    return {"name": name, "metric": metric, "weights": weights or [1 / k] * k, "variants": variants}


def literal(
    name: str, metric: str, rows: list[dict[str, int]], weights: list[float] | None = None
) -> dict[str, Any]:
    k = len(rows)
    variants = [
        {
            "key": f"v{i}",
            "users": 0,
            "sum_x": 0,
            "sum_x2": 0,
            "sum_y": 0,
            "sum_y2": 0,
            "sum_xy": 0,
            **r,
        }
        for i, r in enumerate(rows)
    ]
    return {"name": name, "metric": metric, "weights": weights or [1 / k] * k, "variants": variants}


CASES = [
    synthetic("proportion_2arm", "converted", [5000, 5000], [1.0, 1.15], 1),
    synthetic(
        "mean_3arm_unequal", "clicks", [4000, 2000, 2000], [1.0, 1.1, 0.95], 2, [0.5, 0.25, 0.25]
    ),
    synthetic("mean_inverse", "refresh_requests", [3000, 3000], [1.0, 0.96], 3),
    synthetic("ratio_pvctr", "pvctr", [3000, 3000], [1.0, 1.19], 4),
    synthetic("ratio_uvctr", "uvctr", [3000, 3000], [1.0, 1.07], 5),
    synthetic(
        "gradient_5arm", "pvctr", [1500, 1500, 1500, 1500, 1500], [1.0, 1.05, 1.1, 1.2, 0.9], 6
    ),
    synthetic("null_effect", "clicks", [2000, 2000], [1.0, 1.0], 7),
    synthetic("tiny_n", "clicks", [3, 2], [1.0, 1.5], 8),
    literal(
        "srm_52_48",
        "converted",
        [
            {"users": 52000, "sum_x": 5200, "sum_x2": 5200},
            {"users": 48000, "sum_x": 5040, "sum_x2": 5040},
        ],
    ),
    literal(
        "srm_50.2_49.8",
        "converted",
        [
            {"users": 5020, "sum_x": 502, "sum_x2": 502},
            {"users": 4980, "sum_x": 520, "sum_x2": 520},
        ],
    ),
    literal("zero_baseline", "clicks", [{"users": 100}, {"users": 100, "sum_x": 7, "sum_x2": 9}]),
    literal(
        "zero_variance",
        "clicks",
        [{"users": 50, "sum_x": 30, "sum_x2": 40}, {"users": 50, "sum_x": 50, "sum_x2": 50}],
    ),
    literal(
        "zero_denominator",
        "pvctr",
        [
            {"users": 10},
            {"users": 10, "sum_x": 2, "sum_x2": 2, "sum_y": 9, "sum_y2": 11, "sum_xy": 3},
        ],
    ),
    literal(
        "empty_variant", "converted", [{"users": 100, "sum_x": 10, "sum_x2": 10}, {"users": 0}]
    ),
    literal("no_users", "clicks", [{"users": 0}, {"users": 0}]),
]


def gbstats_rows(case: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "dimension": "",
            "variation": v["key"],
            "users": v["users"],
            "count": v["users"],
            "main_sum": v["sum_x"],
            "main_sum_squares": v["sum_x2"],
            "denominator_sum": v["sum_y"],
            "denominator_sum_squares": v["sum_y2"],
            "main_denominator_sum_product": v["sum_xy"],
        }
        for v in case["variants"]
    ]


def run(case: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    from gbstats.gbstats import process_single_metric
    from gbstats.models.settings import (
        AnalysisSettingsForStatsEngine,
        MetricSettingsForStatsEngine,
    )

    keys = [v["key"] for v in case["variants"]]
    common = {"var_names": keys, "var_ids": keys, "weights": case["weights"]}
    analyses = [
        AnalysisSettingsForStatsEngine(
            **common, stats_engine="frequentist", difference_type="relative"
        ),
        AnalysisSettingsForStatsEngine(
            **common, stats_engine="frequentist", difference_type="absolute"
        ),
        AnalysisSettingsForStatsEngine(
            **common, stats_engine="bayesian", difference_type="relative"
        ),
    ]
    metric = MetricSettingsForStatsEngine(
        id=case["metric"], name=case["metric"], **METRIC_SETTINGS[case["metric"]]
    )
    res = asdict(process_single_metric(gbstats_rows(case), metric, analyses))
    rel, ab, bayes = (a["dimensions"][0] for a in res["analyses"])
    out: dict[str, Any] = {"srm_p": rel["srm"], "variants": []}
    for i in range(len(keys)):
        r, a, b = rel["variations"][i], ab["variations"][i], bayes["variations"][i]
        row: dict[str, Any] = {"key": keys[i], "cr": r["cr"]}
        if i > 0:
            row |= {
                "relative": {
                    "expected": r["expected"],
                    "ci": list(r["ci"]),
                    "p_value": r["pValue"],
                    "error": r["errorMessage"],
                },
                "absolute": {
                    "expected": a["expected"],
                    "ci": list(a["ci"]),
                    "p_value": a["pValue"],
                    "error": a["errorMessage"],
                },
                "bayesian": {"chance_to_win": b["chanceToWin"], "error": b["errorMessage"]},
            }
        out["variants"].append(row)
    return out


def main() -> None:
    import importlib.metadata

    cases = [case | {"gbstats": run(case)} for case in CASES]
    doc = {"gbstats_version": importlib.metadata.version("gbstats"), "cases": cases}
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(cases)} cases to {OUT}")


if __name__ == "__main__":
    main()

"""The targets a simulator report checks each headline metric against (the reference results)."""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS"]

# (metric, target as the report prints it, check of the metric's report row)
TARGETS: list[tuple[str, str, Any]] = [
    ("time.refresh_requests_per_user", "≤ −14 % vs the reference rule at its click PV",
     lambda m: m["relative_change"] is not None and m["relative_change"] <= -0.14),
    ("time.pvctr", "≥ +18.8 % (clicks / exposures)",
     lambda m: m["relative_change"] is not None and m["relative_change"] >= 0.188),
    ("space.fixes_per_user_hour", "≤ −60 %",
     lambda m: m["relative_change"] is not None and m["relative_change"] <= -0.60),
    ("space.entries_missed_pct", "policy ≤ 1 %",
     lambda m: m["policy"] is not None and m["policy"] <= 1.0),
    ("space.median_entry_delay_s", "policy ≤ 30 s",
     lambda m: m["policy"] is not None and m["policy"] <= 30.0),
    ("space.fence_card_click_pv_per_user", "> 0 %",
     lambda m: m["relative_change"] is not None and m["relative_change"] > 0),
    ("events.sync_requests_per_user", "≤ −90 %",
     lambda m: m["relative_change"] is not None and m["relative_change"] <= -0.90),
    ("events.directives_delivered_pct", "policy = 100 %",
     lambda m: m["policy"] is not None and m["policy"] >= 100.0),
    ("dedupe.duplicates_per_screen", "≤ −33 %",
     lambda m: m["relative_change"] is not None and m["relative_change"] <= -0.33),
    ("dedupe.total_score_per_full_screen", "optimal ≥ greedy",
     lambda m: m["relative_change"] is not None and m["relative_change"] >= 0),
]  # fmt: skip

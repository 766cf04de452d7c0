"""docs/alerts.yml: it parses, every rule is complete, and it watches metrics that exist."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from tests.support import MakeClient, alert_rules

# What Prometheus needs of an alerting rule, and what a page needs to say what happened.
RULE_FIELDS = {"alert", "expr", "for", "labels", "annotations"}
METRIC_NAME = re.compile(r"\brefreshd_[a-z0-9_]+\b")
# The sample names each metric type exposes beside (or instead of) the family's own name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_names(text: str) -> set[str]:
    """Return every sample name a /metrics text exposes, also for metrics with no sample yet."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def test_every_rule_has_the_standard_fields() -> None:
    rules = alert_rules()
    assert len(rules) >= 5
    names = [r["alert"] for r in rules]
    assert len(set(names)) == len(names)
    for rule in rules:
        assert rule.keys() >= RULE_FIELDS, rule.get("alert")
        assert re.fullmatch(r"\d+[smh]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert METRIC_NAME.search(rule["expr"]), f"{rule['alert']} names no refreshd metric"


async def test_every_metric_in_an_expression_is_exported(make_client: MakeClient) -> None:
    client = await make_client()
    text = await (await client.get("/metrics")).text()
    exported = exported_names(text)
    assert "refreshd_request_seconds_bucket" in exported  # histogram suffixes are understood
    assert "refreshd_decisions_total" in exported  # a counter without samples yet
    for rule in alert_rules():
        unknown = set(METRIC_NAME.findall(rule["expr"])) - exported
        assert not unknown, f"{rule['alert']} watches metrics the service does not export"


def test_the_alerts_watch_what_the_issue_asks_for() -> None:
    exprs = " ".join(r["expr"] for r in alert_rules())
    for metric in (
        "refreshd_score_psi",
        "refreshd_calibration_ratio",
        "refreshd_model_age_seconds",
        "refreshd_decisions_total",
        "refreshd_store_errors_total",
    ):
        assert metric in exprs

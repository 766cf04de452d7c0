"""Online/offline feature consistency: the vectors the service logged against a rebuild.

Every decision row carries the vector the service computed (`features`). Rebuilding the same
row point-in-time from the event log (`build_dataset`: the events the service had received,
pruned like its window, the row's own context) must give the same numbers, value for value:
a difference means training sees other features than serving, the skew that quietly costs a
model its accuracy. The report counts, per feature, the rows that match, differ (a mismatch)
or have no logged value (missing: the vector is shorter, or the row has none), and values past
the declared features (extra); each with a few decision ids to look at.

Vectors are compared by position against today's `FEATURES`: rows logged by code with other
declarations show up as mismatches, missing or extra values, which is what they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from intent.dataset import EventLog, build_dataset
from intent.features import FEATURE_NAMES, FEATURES_VERSION

__all__ = ["MAX_EXAMPLES", "Example", "FeatureParity", "ParityReport", "parity", "to_markdown"]

# Enough ids to start a look at the rows; the counts say how many there are.
MAX_EXAMPLES = 5
# A pull always refreshes, so the service computes (and logs) no features for it.
_NO_FEATURES_TRIGGER = "pull"

Row = Mapping[str, Any]


class Example(msgspec.Struct):
    decision_id: str
    logged: Any  # None: not logged; whatever the row holds otherwise
    rebuilt: float | None  # None: past the declared features


class FeatureParity(msgspec.Struct, kw_only=True):
    name: str
    compared: int = 0  # rows whose logged vector has this feature
    mismatches: int = 0
    missing: int = 0  # rows whose logged vector lacks it, or that have no vector
    examples: list[Example] = msgspec.field(default_factory=list)  # first mismatches / missing


class ExtraParity(msgspec.Struct, kw_only=True):
    position: int  # 0-based index in the logged vector, past the declared features
    count: int = 0
    examples: list[Example] = msgspec.field(default_factory=list)


class ParityReport(msgspec.Struct, kw_only=True):
    since_ms: int
    until_ms: int  # decisions with since_ms <= ts < until_ms
    features_version: str  # the declarations the rebuild used
    decisions: int  # decision rows in the window
    pull: int  # of them pulls, which compute no features: not compared
    other_version: int  # of them vectors of other feature declarations: not compared
    rows_compared: int  # rows with a logged vector
    rows_without_vector: int
    rows_matched: int  # rows whose whole vector equals the rebuild
    match_rate: float | None  # rows_matched / (decisions - pull); None without such rows
    ok: bool  # every row matched
    features: list[FeatureParity]
    extra: list[ExtraParity]
    without_vector: list[str]  # a few decision ids of rows without a vector
    event_rows: int  # event log rows the rebuild read
    oldest_event_ts: int | None
    log_truncated: bool = False  # set by the reader when it hit its row limit


def _note(examples: list[Example], example: Example) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append(example)


def parity(
    decisions: Iterable[Row], events: Iterable[Row], *, since_ms: int, until_ms: int
) -> ParityReport:
    """Return the consistency report of the decisions with `since_ms <= ts < until_ms`."""
    events = list(events)
    in_window = [d for d in decisions if since_ms <= int(d["ts"]) < until_ms]
    rows = [d for d in in_window if d["trigger"] != _NO_FEATURES_TRIGGER]
    # A row says which declarations made its vector: one of another release is not compared.
    other = [d for d in rows if d.get("feature_version") not in (None, FEATURES_VERSION)]
    rows = [d for d in rows if d.get("feature_version") in (None, FEATURES_VERSION)]
    rebuilt = build_dataset(rows, EventLog(events), triggers=None)
    logged = {str(d["decision_id"]): d.get("features") for d in rows}
    per_feature = [FeatureParity(name=n) for n in FEATURE_NAMES]
    extra: dict[int, ExtraParity] = {}
    without_vector: list[str] = []
    compared = matched = 0
    for did, vector in zip(rebuilt.decision_ids, rebuilt.X.tolist(), strict=True):
        got = logged[did]
        if got is None:
            for f in per_feature:
                f.missing += 1
                _note(f.examples, Example(did, None, None))
            if len(without_vector) < MAX_EXAMPLES:
                without_vector.append(did)
            continue
        compared += 1
        same = len(got) == len(vector)
        for j, f in enumerate(per_feature):
            if j >= len(got):
                f.missing += 1
                _note(f.examples, Example(did, None, vector[j]))
                continue
            f.compared += 1
            if got[j] != vector[j]:
                same = False
                f.mismatches += 1
                _note(f.examples, Example(did, got[j], vector[j]))
        for j in range(len(vector), len(got)):
            e = extra.setdefault(j, ExtraParity(position=j))
            e.count += 1
            _note(e.examples, Example(did, got[j], None))
        matched += same
    expected = len(rows)
    return ParityReport(
        since_ms=since_ms,
        until_ms=until_ms,
        features_version=FEATURES_VERSION,
        decisions=len(in_window),
        pull=len(in_window) - expected - len(other),
        other_version=len(other),
        rows_compared=compared,
        rows_without_vector=expected - compared,
        rows_matched=matched,
        match_rate=matched / expected if expected else None,
        ok=matched == expected,
        features=per_feature,
        extra=[extra[j] for j in sorted(extra)],
        without_vector=without_vector,
        event_rows=len(events),
        oldest_event_ts=min((int(e["ts"]) for e in events), default=None),
    )


def _ids(examples: list[Example]) -> str:
    return ", ".join(f"`{e.decision_id}` ({e.logged} → {e.rebuilt})" for e in examples)


def to_markdown(report: ParityReport) -> str:
    """Return the report for people: the verdict, the counts, then only the features that differ."""
    rate = "n/a" if report.match_rate is None else f"{report.match_rate:.4%}"
    lines = [
        "# Feature parity report",
        "",
        f"**{'PASS' if report.ok else 'FAIL'}**: {report.rows_matched} of "
        f"{report.decisions - report.pull - report.other_version} decision rows match their"
        f" rebuild ({rate}).",
        "",
        f"- window: `{report.since_ms}` ≤ ts < `{report.until_ms}` (epoch ms)",
        f"- features version: `{report.features_version}` ({len(report.features)} features)",
        f"- decisions in the window: {report.decisions} ({report.pull} pulls and"
        f" {report.other_version} of other feature declarations, not compared)",
        f"- rows with a logged vector: {report.rows_compared}; without: "
        f"{report.rows_without_vector}"
        + (f" (e.g. {', '.join(report.without_vector)})" if report.without_vector else ""),
        f"- event rows read: {report.event_rows}, oldest ts {report.oldest_event_ts}",
    ]
    if report.log_truncated:
        lines.append("- **the logs were read up to the row limit: older rows were not seen**")
    bad = [f for f in report.features if f.mismatches or f.missing]
    if bad:
        lines += ["", "| feature | compared | mismatches | missing | examples (logged → rebuilt) |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| `{f.name}` | {f.compared} | {f.mismatches} | {f.missing} | "
                  f"{_ids(f.examples)} |" for f in bad]  # fmt: skip
    if report.extra:
        lines += ["", "| extra position | rows | examples |", "|---|---|---|"]
        lines += [f"| {e.position} | {e.count} | {_ids(e.examples)} |" for e in report.extra]
    if not bad and not report.extra:
        lines += ["", f"Every one of the {len(report.features)} features matches in every row."]
    return "\n".join(lines) + "\n"

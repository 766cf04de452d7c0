"""Write a replay report as files: report.json, report.md and replay.png (`refreshd replay`)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from refreshd.core.replay import ClickChange, ReplayReport

__all__ = ["write_report"]


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.2f} %"


def _ci(ci: tuple[float, float] | None) -> str:
    return "–" if ci is None else f"[{ci[0] * 100:+.2f} %, {ci[1] * 100:+.2f} %]"


def markdown(r: ReplayReport) -> str:
    """Return the report as Markdown, in the order an operator reads it."""
    share = "–" if r.reproduced_share is None else f"{r.reproduced_share * 100:.2f} %"
    lines = [
        "# refreshd replay",
        "",
        f"Window: decisions with ts in [{r.since}, {r.until}) — {r.decisions} decisions, "
        f"policy versions {r.policy_versions or '–'}, models {r.model_versions or '–'}.",
        "",
        f"**Reproduced: {r.reproduced} of {r.decisions} ({share})** with the versions of "
        "their time.",
    ]
    if r.not_reproduced:
        lines += ["", "| decision | differs in | logged | replayed |", "|---|---|---|---|"]
        for m in r.not_reproduced:
            got = "–" if m.replayed is None else f"{m.replayed.refresh} {m.replayed.reason}"
            lines.append(f"| {m.decision_id} | {', '.join(m.fields)} | "
                         f"{m.logged.refresh} {m.logged.reason} | {got} |")  # fmt: skip
    if r.candidate is not None and r.exploration is not None:
        c, e = r.candidate, r.exploration
        lines += [
            "",
            f"## Candidate: model {c.model or 'as logged'}, threshold "
            f"{'as logged' if c.threshold is None else c.threshold}",
            "",
            "One step: each decision's inputs as logged; once the candidate answers a decision "
            f"otherwise, the rest of that visit counts as logged ({r.after_change} decisions).",
            "",
            f"- flipped: {r.flipped} decisions ({_pct(r.flipped_share)[1:]} of the window)",
            f"- refreshes: {r.refreshes} logged, {r.candidate_refreshes} with the candidate "
            f"({_pct(r.refresh_rate_change)})",
            f"- exploration decisions: {e.decisions} ({e.mature} with a closed click window, "
            f"{e.immature} still open, {e.unscored} without a model or features); the "
            f"candidate answers {e.flipped} of them otherwise",
            f"- the click estimate scales to {r.population} decisions outside experiments that "
            f"the intent node decided; {r.window_clicks} clicks were logged in the window",
            "",
            "| estimator | clicks | 95 % CI | relative | 95 % CI |",
            "|---|---|---|---|---|",
        ]
        for est in (r.estimated_click_change, r.estimated_click_change_snips):
            if est is not None:
                lines.append(
                    f"| {est.method} | {est.clicks:+.1f} | [{est.clicks_ci[0]:+.1f}, "
                    f"{est.clicks_ci[1]:+.1f}] | {_pct(est.relative)} | {_ci(est.relative_ci)} |"
                )
    return "\n".join(lines) + "\n"


def _plot(r: ReplayReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    if r.candidate is None:
        left.bar(["reproduced", "not"], [r.reproduced, r.decisions - r.reproduced],
                 color=["#4c72b0", "#c44e52"])  # fmt: skip
        left.set_title("decisions")
        right.axis("off")
    else:
        left.bar(["logged", "candidate"], [r.refreshes or 0, r.candidate_refreshes or 0],
                 color=["#8c8c8c", "#4c72b0"])  # fmt: skip
        left.set_title(f"refreshes ({_pct(r.refresh_rate_change)})")
        ests: list[ClickChange] = [
            e
            for e in (r.estimated_click_change, r.estimated_click_change_snips)
            if e is not None and e.relative is not None and e.relative_ci is not None
        ]
        for i, e in enumerate(ests):
            assert e.relative is not None and e.relative_ci is not None
            lo, hi = e.relative_ci
            right.errorbar([i], [e.relative * 100], yerr=[[(e.relative - lo) * 100],
                           [(hi - e.relative) * 100]], fmt="o", capsize=6)  # fmt: skip
        right.axhline(0, color="#8c8c8c", lw=0.8)
        right.set_xticks(range(len(ests)), [e.method for e in ests])
        right.set_xlim(-0.7, max(len(ests), 1) - 0.3)
        right.set_ylabel("click change, % (95 % CI)")
        right.set_title("estimated click change")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(r: ReplayReport, out: Path) -> list[Path]:
    """Write report.json, report.md and replay.png into `out`; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md", out / "replay.png"]
    paths[0].write_bytes(msgspec.json.format(msgspec.json.encode(r)) + b"\n")
    paths[1].write_text(markdown(r))
    _plot(r, paths[2])
    return paths

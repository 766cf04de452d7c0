"""Visits to the app: when they happen, the latent intent behind each, and its looks.

Modelling choices:

- Sessions per local day are Poisson around the user's rate, at hours drawn from the
  archetype's diurnal profile (commute peaks, lunch, evening), uniformly within the hour. A
  session that would start before the previous one ended is dropped (one app, one visit).
- Each session has a latent intent: *browse* (look at recommendations) or *utility* (pay,
  scan, check a balance, leave). P(browse) = sigmoid(user's base logit + the archetype's
  effect at its browse hours + `persistence_logit` if the user browsed within
  `persistence_window_s`): intent is partly habitual (hour), partly a mood that persists.
  A latent `intensity` (gamma, mean 1) scales how many clicks a browse visit produces.
  None of this is visible to the policy; it shows only through what the user does.
- Browse visits last longer (`browse_mean_s` vs `utility_mean_s`, exponential) and scroll more
  (Poisson `scroll_rate_*`): that is the observable signal the intent model may learn.
- A *view* is a moment the user looks at the homepage: the open (or `return`, within
  `return_gap_s` of the previous visit's end), each scroll (Poisson `scroll_rate_*`), and,
  while browsing, a glance every `view_gap_s`. Views are the user's, not the policy's: every
  arm sees the same views. When the device asks the service (open, first scroll, timers) is
  the device's business (`client_sim.device`).
- Four uniforms per view (clicks, pull-to-refresh, feedback, item choice) are drawn here,
  once, so every policy sees the same ones (common random numbers).
- Each visit has a launch source the device observes, and a visit launched from a bypassing
  shortcut shows no homepage view at all; each scroll reaches a depth of the feed
  (`client_sim.launch`, from streams of their own).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import gammaincinv

from client_sim.launch import Launcher, depth_means
from client_sim.mobility import DAY_MS, HOUR_MS
from client_sim.population import User, stream
from client_sim.scenario import Scenario
from client_sim.stats import poisson_ppf

__all__ = ["Latent", "Look", "Session", "make_sessions"]

# Uniform columns of Session.u
U_CLICK, U_PULL, U_FEEDBACK, U_ITEM = range(4)


@dataclasses.dataclass(slots=True)
class Latent:
    """What the user wants in this visit; never visible to the policy.

    `prior` is the probability the visit's intent was drawn with (habit, hour, persistence):
    everything the user's history could ever reveal about it. Only the diagnostic bound arms
    (`client_sim.timeexp`) read it.
    """

    browse: bool
    intensity: float
    prior: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Look:
    """A view of the homepage; `trigger` is open, return, scroll or glance."""

    ts: int
    trigger: str


@dataclasses.dataclass(slots=True)
class Session:
    """One visit: its span, latent intent, views and their uniforms."""

    start: int
    end: int
    latent: Latent
    looks: list[Look]
    u: list[list[float]]  # per look: 4 uniforms (Python floats: read in the hot loop)
    payment_ts: int | None
    payment_value: float
    # What the device observes of the visit (never latent): how the app was opened, whether
    # the visit bypassed the homepage (then `looks` is empty), and per look the scrolls so far
    # and the deepest share of the feed reached so far.
    launch: str = "icon"
    bypass: bool = False
    scrolls: list[int] = dataclasses.field(default_factory=list)
    depth: list[float] = dataclasses.field(default_factory=list)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# At most this many views per session: 24 minutes of browsing at one glance a minute; longer
# visits get no more glances (rare: browse visits average 4 min).
MAX_LOOKS = 24
MAX_SCROLLS = 8


def make_sessions(
    sc: Scenario, user: User, t0: int, t1: int, *, seed: int, tail_ms: int = 0
) -> tuple[list[Session], int | None]:
    """Return the user's sessions starting in [t0, t1), and the first start in [t1, t1+tail)."""
    rng = stream(seed, user.cohort, user.index, "sessions")
    arch = sc.archetype(user.archetype)
    cfg = sc.sessions
    hour_p = np.asarray(arch.diurnal, dtype=np.float64)
    hour_p = hour_p / hour_p.sum()
    tz_ms = user.tz_offset_min * 60_000
    day0 = (t0 + tz_ms) // DAY_MS * DAY_MS - tz_ms
    chunks = []
    while day0 < t1 + tail_ms:
        n = int(rng.poisson(user.sessions_per_day))
        hours = rng.choice(24, size=n, p=hour_p)
        chunks.append(day0 + (hours + rng.random(n)) * HOUR_MS)
        day0 += DAY_MS
    starts = np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.zeros(0, np.int64)
    n = len(starts)
    # One block per kind of draw: a session's draws depend only on its rank among the starts.
    base_u = rng.random((n, 6))
    scroll_pos = rng.random((n, MAX_SCROLLS))
    look_u = rng.random((n, MAX_LOOKS, 4))
    pay_value = np.round(rng.gamma(2.0, 20.0, n), 2)
    intensity = gamma_unit_ppf(base_u[:, 1], sc.clicks.intensity_shape).tolist()
    # Observable signals, each from a stream of its own: no other draw moves with them.
    launch_l = stream(seed, user.cohort, user.index, "launch").random((n, 2)).tolist()
    step_l = stream(seed, user.cohort, user.index, "depth").random((n, MAX_SCROLLS)).tolist()
    launcher = Launcher.of(sc.launch)
    step_b, step_u = depth_means(sc.in_visit)
    # Python lists: per-element access to numpy arrays costs more than the loop's own work.
    base_l, scroll_l, pay_l, start_l = (
        base_u.tolist(),
        scroll_pos.tolist(),
        pay_value.tolist(),
        starts.tolist(),
    )
    browse_hours = frozenset(arch.browse_hours)
    gap_ms = int(cfg.view_gap_s * 1000)
    window_ms = cfg.persistence_window_s * 1000
    out: list[Session] = []
    last_end: int | None = None
    last_browse_end: int | None = None
    for k in range(n):
        start = start_l[k]
        if start < t0 or (last_end is not None and start <= last_end):
            continue
        if start >= t1:
            return out, (start if start < t1 + tail_ms else None)
        u_intent, _, u_len, u_pay, u_pay_t, n_scroll_u = base_l[k]
        local_hour = (start + tz_ms) // HOUR_MS % 24
        logit = user.base_logit + (arch.browse_hour_effect if local_hour in browse_hours else 0)
        if last_browse_end is not None and start - last_browse_end < window_ms:
            logit += cfg.persistence_logit
        p_browse = _sigmoid(logit)
        browse = bool(u_intent < p_browse)
        mean_s = cfg.browse_mean_s if browse else cfg.utility_mean_s
        dur_ms = int(((20 if browse else 8) - mean_s * math.log1p(-u_len)) * 1000)
        end = start + dur_ms
        returning = last_end is not None and start - last_end < cfg.return_gap_s * 1000
        looks = [Look(start, "return" if returning else "open")]
        rate = cfg.scroll_rate_browse if browse else cfg.scroll_rate_utility
        for p in scroll_l[k][: min(MAX_SCROLLS, poisson_ppf(n_scroll_u, rate))]:
            looks.append(Look(start + 3000 + int(p * max(1, dur_ms - 3000)), "scroll"))
        t = start + gap_ms
        while browse and t < end:
            looks.append(Look(t, "glance"))
            t += gap_ms
        looks.sort(key=lambda lk: lk.ts)
        looks = [lk for i, lk in enumerate(looks) if i == 0 or lk.ts > looks[i - 1].ts + 1000]
        looks = looks[:MAX_LOOKS]
        u_source, u_bypass = launch_l[k]
        source, bypass = launcher.draw(u_source, u_bypass, browse)
        if bypass:
            looks = []
        step, steps, j, depth = step_b if browse else step_u, step_l[k], 0, 0.0
        n_scrolls, depths = [], []
        for lk in looks:
            if lk.trigger == "scroll":
                depth = min(1.0, depth - step * math.log1p(-steps[j]))
                j += 1
            n_scrolls.append(j)
            depths.append(depth)
        p_pay = sc.behaviour.payment_prob_browse if browse else sc.behaviour.payment_prob_utility
        pay_ts = start + 2000 + int(u_pay_t * min(30_000, dur_ms)) if u_pay < p_pay else None
        out.append(
            Session(start, end, Latent(browse, intensity[k], p_browse), looks,
                    look_u[k, : len(looks)].tolist(), pay_ts, pay_l[k], source, bypass,
                    n_scrolls, depths)
        )  # fmt: skip
        last_end = end
        if browse:
            last_browse_end = end
    return out, None


def gamma_unit_ppf(u: np.ndarray, shape: float) -> np.ndarray:
    """Return Gamma(shape, scale 1/shape) quantiles: mean 1, monotone in u."""
    return np.asarray(gammaincinv(shape, np.clip(u, 1e-12, 1 - 1e-12)) / shape)

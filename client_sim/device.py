"""A simulated device in fast mode: it lives one user's sessions against one arm's service.

The device does what the app does. Before every request it flushes its event buffer
(`POST /v1/events`, carrying the acknowledgements it owes). It asks `POST /v1/decide` when the
app opens or returns, when the user first scrolls into the feed during a visit whose list was
not refreshed yet (after a refresh in this visit the feed is what was just served), and on a
foreground timer at the `next_check_s` the service returned: the service's hint of when asking
again could change the answer. It renders a fresh list when told to refresh (logging one
`impression`; an *exposure* is counted once a view shows it, `Seen`), and then the *user*
reacts to what is on screen (`client_sim.behaviour`): clicks, pull-to-refresh (an immediate
`pull` decide), negative feedback. Payments and the `background` at the end of a visit are
events too. Directives ride back on every response; the
device acknowledges a `refresh` directive once a decide has refreshed, any other directive on
its next request.

Every decide carries what the app knows of the visit: its launch source, the seconds the
homepage has been on screen, the scrolls so far and the depth they reached. A visit launched
from a shortcut that bypasses the homepage has no views, so the device never asks in it.

The device is a generator: when the service needs an intent score it yields the feature
vector and is sent the score, so a driver can score every device's pending opportunity in one
LightGBM call. With `scramble` set, every session's latent intent is replaced by random values
for the duration of each service call and restored for the user's reaction: decisions that do
not change prove the policy never reads the latent state.

`build_world` assembles one user's world (profile, trajectory, sessions, the position of every
view) from the user's own random streams only, so user `i` of a seed is the same person in
every run, whatever the number of users or the arms compared.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from bisect import bisect_right
from collections.abc import Generator

import numpy as np

from client_sim.cloud import Cloud, CloudUser
from client_sim.launch import mixed
from client_sim.mobility import DAY_MS, HOUR_MS, Plan, make_plan
from client_sim.places import M_PER_DEG, PlaceSet
from client_sim.population import User, make_user
from client_sim.scenario import Scenario
from client_sim.sessions import U_CLICK, U_FEEDBACK, U_ITEM, U_PULL, Latent, Session, make_sessions
from client_sim.stats import poisson_ppf
from intent.events import Event
from intent.features import LAUNCH_SOURCES
from refreshd.core.messages import DecideRequest, Directive
from refreshd.core.state import UserState

__all__ = ["ArmStats", "Built", "Carry", "Device", "UserWorld", "build_world", "run_device"]

# The list on screen when the simulation starts was computed the evening before.
INITIAL_AGE_MS = 8 * 3_600_000
IMPRESSION_DELAY_MS = 300
PULL_DELAY_MS = 1500
FEEDBACK_DELAY_MS = 2500


@dataclasses.dataclass(slots=True)
class UserWorld:
    """Everything about one user the world knows (latent parts included)."""

    user: User
    sessions: list[Session]
    first_eval: int  # sessions before this index are the warm-up day
    next_start: int | None  # first session after the horizon (the next contact)
    look_lat: list[list[float]]
    look_lng: list[list[float]]
    start_pos: tuple[float, float]


@dataclasses.dataclass(slots=True)
class Built:
    world: UserWorld
    plan: Plan


def build_world(
    sc: Scenario, places: PlaceSet, *, seed: int, cohort: int, index: int, t0: int, t1: int,
    warmup_ms: int = 0,
) -> Built:  # fmt: skip
    """Return user `index` of `cohort` living through [t0, t1) (plus a day for next contacts).

    With `warmup_ms`, sessions start that much earlier; `world.first_eval` marks t0.
    """
    user = make_user(sc, places, seed, cohort, index)
    w0 = t0 - warmup_ms
    plan = make_plan(sc, places, user, w0 - HOUR_MS, t1 + DAY_MS, seed=seed)
    sessions, next_start = make_sessions(sc, user, w0, t1, seed=seed, tail_ms=DAY_MS)
    first_eval = next((i for i, s in enumerate(sessions) if s.start >= t0), len(sessions))
    ts = np.array([lk.ts for s in sessions for lk in s.looks], dtype=np.int64)
    lat, lng = plan.at(ts)
    lat_l, lng_l = lat.tolist(), lng.tolist()
    look_lat, look_lng, i = [], [], 0
    for s in sessions:
        j = i + len(s.looks)
        look_lat.append(lat_l[i:j])
        look_lng.append(lng_l[i:j])
        i = j
    s_lat, s_lng = plan.at(np.array([t0]))
    world = UserWorld(user, sessions, first_eval, next_start, look_lat, look_lng,
                      (float(s_lat[0]), float(s_lng[0])))  # fmt: skip
    return Built(world, plan)


@dataclasses.dataclass(slots=True)
class ArmStats:
    """What one user did under one arm."""

    decides: int = 0
    event_posts: int = 0
    refreshes: int = 0
    impressions: int = 0  # impression events logged (one per rendered refresh)
    exposures: int = 0  # refreshed lists the user actually saw (see `Seen`)
    clicks: int = 0
    views: int = 0
    pulls: int = 0
    event_refreshes: int = 0
    # (directive id, created ts, first delivered ts or None)
    directives: list[tuple[str, int, int | None]] = dataclasses.field(default_factory=list)
    refresh_log: list[tuple[int, tuple[str, ...] | None]] = dataclasses.field(default_factory=list)
    decisions: list[tuple[int, str, bool, str, float | None]] = dataclasses.field(
        default_factory=list
    )


@dataclasses.dataclass(slots=True)
class Carry:
    """Where a warm-up left the device and the service: every arm starts from a copy."""

    state: UserState
    pending: list[Directive]
    n_batches: int
    n_decisions: int
    acks: list[str]
    known: dict[str, Directive]
    screen_ts: int
    screen_pos: tuple[float, float]


class Device:
    """One user's app under one arm."""

    def __init__(
        self, sc: Scenario, world: UserWorld, cloud: Cloud, *, record: bool,
        carry: Carry | None = None,
    ) -> None:  # fmt: skip
        self.sc = sc
        self.w = world
        self.cloud = cloud
        self.cu = CloudUser(world.user.uid)
        self.acks: list[str] = []
        self.known: dict[str, Directive] = {}
        if carry is not None:
            # UserState is replaced, never mutated, by the flows: sharing it is safe.
            cloud.seed(world.user.uid, carry.state, carry.pending)
            self.cu = CloudUser(world.user.uid, carry.n_batches, carry.n_decisions)
            self.acks = list(carry.acks)
            self.known = dict(carry.known)
        self.buf: list[Event] = []
        self.delivered: dict[str, int] = {}
        self.stats = ArmStats()
        self.record = record
        self.tz = world.user.tz_offset_min if world.user.reports_tz else None

    def _receive(self, dirs: list[Directive], ts: int) -> None:
        for d in dirs:
            if d.id not in self.delivered:
                self.delivered[d.id] = ts
                self.known[d.id] = d
                if d.type != "refresh":
                    self.acks.append(d.id)

    def flush(self, ts: int) -> None:
        """POST the buffered events (with pending acks)."""
        if not self.buf:
            return
        self.buf.sort(key=_TS)
        dirs = self.cloud.events(self.cu, self.buf, self.acks, ts).directives
        self.buf, self.acks = [], []
        self.stats.event_posts += 1
        self._receive(dirs, ts)

    def finish(self) -> ArmStats:
        """Return the stats, settling directives on the first contact after the horizon."""
        nxt = self.w.next_start
        for did, created in self.cu.created:
            got = self.delivered.get(did)
            if got is None and nxt is not None and nxt < created + 86_400_000:
                got = nxt
            self.stats.directives.append((did, created, got))
        return self.stats


_TS = operator.attrgetter("ts")


class Seen:
    """Exposure counting: a refresh is an exposure once its refreshed slots are on screen.

    The list a refresh served is seen at the first view that shows one of its slots: a view
    before the user scrolls into the feed in that visit shows the slots above the fold (every
    slot but `feed`), a view after it (the scroll itself included) shows the feed. A refresh
    replaced before any view showed it — a timer refresh at the end of a visit followed by a
    refresh at the next open, say — is never an exposure; each counts at most once.
    """

    __slots__ = ("above", "below", "pending")

    def __init__(self) -> None:
        self.pending = False
        self.above = False  # the pending refresh changed a slot above the fold
        self.below = False  # ... or the feed below it

    def refreshed(self, slots: list[str] | None) -> None:
        self.pending = True
        self.above = slots is None or any(s != "feed" for s in slots)
        self.below = slots is None or "feed" in slots

    def view(self, in_feed: bool) -> int:
        """Return 1 when this view exposes the pending refresh (and settle it)."""
        if self.pending and (self.below if in_feed else self.above):
            self.pending = False
            return 1
        return 0


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    coslat = math.cos(math.radians(a[0]))
    return math.hypot((b[1] - a[1]) * coslat * M_PER_DEG, (b[0] - a[0]) * M_PER_DEG)


Scored = Generator[list[float], float, ArmStats]


def run_device(
    sc: Scenario,
    world: UserWorld,
    cloud: Cloud,
    *,
    score_mode: str,
    record: bool = False,
    scramble: np.random.Generator | None = None,
    warmup: bool = False,
    carry: Carry | None = None,
    carry_out: list[Carry] | None = None,
) -> Scored:
    """Live the user's sessions; yield feature rows when the policy needs a model score.

    `score_mode`: "model" (yield features, receive the score), "none" (no score: a fixed
    policy, or exploration traffic, whose coin flip the flow draws itself), or one of
    the diagnostic bounds that read the ground truth: "bound_prior" (score = the visit's prior
    browse probability × the list's true staleness), "bound_signal" (that prior updated by the
    visit's launch source, by Bayes with the world's own P(source | intent)) and "bound_visit"
    (the visit's realised
    intent × true staleness); staleness is (1 − F) / (1 − floor) with the world's freshness F.
    `warmup` lives only the warm-up sessions and appends where it left off to `carry_out`;
    otherwise the evaluation sessions are lived, starting from `carry` when given.
    """
    dev = Device(sc, world, cloud, record=record, carry=carry)
    st = dev.stats
    seen = Seen()
    uid = world.user.uid
    slots = sc.catalogue.slots
    screen_ts = (world.sessions[0].start if world.sessions else 0) - INITIAL_AGE_MS
    screen_pos = world.start_pos
    if carry is not None:
        screen_ts, screen_pos = carry.screen_ts, carry.screen_pos
    first, last = (0, world.first_eval) if warmup else (world.first_eval, len(world.sessions))
    ck, bh = sc.clicks, sc.behaviour
    floor, tau_ms, scale_m = (
        ck.freshness_floor,
        ck.freshness_tau_s * 1000.0,
        ck.freshness_distance_m,
    )
    rate_b, rate_u, fold = ck.browse_rate, ck.utility_rate, ck.above_fold_share
    pull_below, pull_p, feedback_p = bh.pull_staleness, bh.pull_prob, bh.feedback_prob

    bound = score_mode if score_mode.startswith("bound_") else None
    p_source = mixed(sc.launch)  # P(source | browse), P(source | utility): the bound_signal arm

    def decide(
        ts: int, trigger: str, sess: Session, pos: tuple[float, float]
    ) -> Generator[list[float], float, tuple[bool, int]]:
        # What the app knows of this visit so far: how it was opened, how long the homepage
        # has been on screen, the scrolls and the depth they reached (never the latent intent).
        at = bisect_right(sess.looks, ts, key=_TS) - 1
        req = DecideRequest(user_id=uid, ts=ts, trigger=trigger, tz_offset_min=dev.tz,  # type: ignore[arg-type]
                            ack=dev.acks or None, launch=sess.launch,  # type: ignore[arg-type]
                            home_dwell_s=min(max(0, ts - sess.start) / 1000.0, 86_400.0),
                            scrolls=sess.scrolls[at] if at >= 0 else 0,
                            scroll_depth=sess.depth[at] if at >= 0 else 0.0)  # fmt: skip
        dev.acks = []
        saved = sess.latent
        if scramble is not None:
            sess.latent = Latent(bool(scramble.random() < 0.5), float(scramble.gamma(2.0)),
                                 float(scramble.random()))  # fmt: skip
        prep = cloud.prepare(dev.cu, req, ts)
        score: float | None = None
        if prep.needs_score:
            if score_mode == "model":
                assert prep.features is not None
                score = yield prep.features
            elif bound is not None:  # diagnostics only: reads the ground truth
                fresh = math.exp(-max(ts - screen_ts, 0) / tau_ms)
                fresh *= math.exp(-_dist(screen_pos, pos) / scale_m)
                if bound == "bound_prior":
                    intent = saved.prior
                elif bound == "bound_signal":  # Bayes: the prior updated by the launch source
                    k = LAUNCH_SOURCES.index(sess.launch)
                    b, u = saved.prior * p_source[0][k], (1.0 - saved.prior) * p_source[1][k]
                    intent = b / (b + u) if b + u > 0 else saved.prior
                else:
                    intent = float(saved.browse)
                score = intent * (1.0 - fresh)
        decision = cloud.decide(dev.cu, prep, score)
        dirs = decision.directives
        sess.latent = saved
        st.decides += 1
        dev._receive(dirs, ts)
        if record:
            st.decisions.append((ts, trigger, decision.refresh, decision.reason, decision.score))
        if decision.refresh:
            st.refreshes += 1
            st.impressions += 1
            seen.refreshed(decision.slots)
            if decision.reason == "event":
                st.event_refreshes += 1
            for did, d in list(dev.known.items()):
                if d.type == "refresh":
                    dev.acks.append(did)
                    del dev.known[did]
            dev.buf.append(Event(type="impression", ts=ts + IMPRESSION_DELAY_MS, slot=slots[0]))
            if record:
                st.refresh_log.append((ts, tuple(decision.slots) if decision.slots else None))
        return decision.refresh, max(1, decision.next_check_s)

    for si in range(first, last):
        sess = world.sessions[si]
        lats, lngs = world.look_lat[si], world.look_lng[si]
        paid = sess.payment_ts is None
        n = len(sess.looks)
        timer_due: int | None = None
        asked_scroll = False
        in_feed = False
        refreshed_here = False
        k = 0
        while True:
            view = sess.looks[k] if k < n else None
            t_view = view.ts if view is not None else sess.end
            # The foreground timer the service asked for (next_check_s) comes first.
            if timer_due is not None and timer_due < t_view:
                ts = timer_due
                pos = (lats[max(k - 1, 0)], lngs[max(k - 1, 0)])
                t_action = ts
            elif view is None:
                break
            else:
                ts, pos, t_action = view.ts, (lats[k], lngs[k]), -1
            if not paid and sess.payment_ts is not None and sess.payment_ts < ts:
                dev.buf.append(Event(type="payment", ts=sess.payment_ts, value=sess.payment_value))
                paid = True
            if t_action >= 0:  # a timer decide, no view
                dev.flush(ts)
                refreshed, next_s = yield from decide(ts, "timer", sess, pos)
                timer_due = ts + next_s * 1000
                if refreshed:
                    screen_ts, screen_pos, refreshed_here = ts, pos, True
                continue
            assert view is not None
            trigger = view.trigger
            ask = trigger in ("open", "return") or (
                trigger == "scroll" and not asked_scroll and not refreshed_here
            )
            if trigger != "glance":
                dev.buf.append(Event(type=trigger, ts=ts))  # type: ignore[arg-type]
            if trigger == "scroll":
                asked_scroll = asked_scroll or ask
                in_feed = True
            if ask:
                dev.flush(ts)
                refreshed, next_s = yield from decide(ts, trigger, sess, pos)
                timer_due = ts + next_s * 1000
                if refreshed:
                    screen_ts, screen_pos, refreshed_here = ts, pos, True
            st.views += 1
            u = sess.u[k]
            # behaviour.freshness, pulls, clicks and gives_feedback inlined, operation for
            # operation (same floats): this runs for every view of every arm.
            moved = _dist(screen_pos, pos)
            fresh = floor + (1.0 - floor) * (
                math.exp(-max(ts - screen_ts, 0) / tau_ms) * math.exp(-moved / scale_m)
            )
            nxt = sess.looks[k + 1].ts if k + 1 < n else sess.end
            k += 1
            latent = sess.latent
            st.exposures += seen.view(in_feed)
            if latent.browse and fresh < pull_below and u[U_PULL] < pull_p:
                t_pull = min(ts + PULL_DELAY_MS, nxt - 600)
                dev.buf.append(Event(type="pull_refresh", ts=t_pull))
                dev.flush(t_pull)
                st.pulls += 1
                refreshed, next_s = yield from decide(t_pull, "pull", sess, pos)
                timer_due = t_pull + next_s * 1000
                screen_ts, screen_pos, refreshed_here = t_pull, pos, True
                fresh = floor + (1.0 - floor)  # freshness(0, 0)
                st.exposures += seen.view(in_feed)
            mean = (
                (rate_b if latent.browse else rate_u)
                * latent.intensity
                * fresh
                * (1.0 if in_feed else fold)
            )
            n_click = (
                0 if mean <= 0 or u[U_CLICK] <= math.exp(-mean) else poisson_ppf(u[U_CLICK], mean)
            )
            if n_click:
                st.clicks += n_click
                item = int(u[U_ITEM] * 10_000)
                span = max(1, nxt - ts - 2500)
                for j in range(n_click):
                    t_click = ts + 2000 + span * (j + 1) // (n_click + 1)
                    dev.buf.append(Event(type="click", ts=t_click, item_id=f"i{item + j:05d}",
                                         slot=slots[(item + j) % len(slots)]))  # fmt: skip
            if u[U_FEEDBACK] < feedback_p * (2.0 - fresh):
                slot = slots[int(u[U_ITEM] * len(slots)) % len(slots)]
                dev.buf.append(Event(type="feedback", ts=min(ts + FEEDBACK_DELAY_MS, nxt - 300),
                                     slot=slot, props={"kind": "negative"}))  # fmt: skip
        if not paid and sess.payment_ts is not None:
            dev.buf.append(Event(type="payment", ts=sess.payment_ts, value=sess.payment_value))
        end = max(sess.end, max((e.ts for e in dev.buf), default=0) + 1)
        dev.buf.append(Event(type="background", ts=end))
        dev.flush(end)
    if carry_out is not None:
        state, pending = cloud.snapshot(uid)
        carry_out.append(Carry(state, pending, dev.cu.n_batches, dev.cu.n_decisions, dev.acks,
                               dev.known, screen_ts, screen_pos))  # fmt: skip
    return dev.finish()

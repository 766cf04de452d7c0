"""A realistic request mix from simulated devices: decide, events and location fixes."""

from __future__ import annotations

import dataclasses
import random
import time

import msgspec

from load.openloop import Request

_json = msgspec.json.Encoder()
TRIGGERS = ("open", "open", "return", "timer", "scroll", "scroll", "pull")
EVENT_TYPES = ("impression", "impression", "impression", "click", "scroll", "open", "feedback")
SLOTS = ["feed", "nearby", "services", "offers"]


@dataclasses.dataclass
class Mix:
    """Weights of each request kind, and the population of devices."""

    users: int = 10_000
    decide: float = 0.7
    events: float = 0.2
    location: float = 0.1
    events_per_batch: int = 8
    seed: int = 0
    # A city-sized box so fixes land near the fences the benchmark loads.
    lat0: float = 31.2304
    lng0: float = 121.4737
    span_deg: float = 0.2

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._batch = 0
        if not self.location_enabled:
            self.decide, self.events = (
                self.decide + self.location * 0.7,
                self.events + self.location * 0.3,
            )
            self.location = 0.0

    location_enabled: bool = True

    def request(self, i: int) -> Request:
        """Return the i-th request of the mix (method, path, JSON body)."""
        rng = self._rng
        uid = f"lt-{rng.randrange(self.users)}"
        now = time.time_ns() // 1_000_000
        r = rng.random()
        if r < self.decide:
            body = {"user_id": uid, "ts": now, "trigger": rng.choice(TRIGGERS), "slots": SLOTS}
            return "POST", "/v1/decide", _json.encode(body)
        if r < self.decide + self.events:
            self._batch += 1
            events = [
                {
                    "type": rng.choice(EVENT_TYPES),
                    "ts": now - rng.randrange(60_000),
                    "item_id": f"i{rng.randrange(5000)}",
                    "slot": rng.choice(SLOTS),
                }
                for _ in range(self.events_per_batch)
            ]
            body = {
                "user_id": uid,
                "batch_id": f"lb-{self.seed}-{self._batch}-{i}",
                "events": events,
            }
            return "POST", "/v1/events", _json.encode(body)
        lat = self.lat0 + (rng.random() - 0.5) * self.span_deg
        lng = self.lng0 + (rng.random() - 0.5) * self.span_deg
        body = {"user_id": uid, "ts": now, "lat": lat, "lng": lng, "accuracy_m": rng.uniform(5, 40)}
        return "POST", "/v1/location", _json.encode(body)


def decide_only(users: int = 10_000, seed: int = 0) -> Mix:
    return Mix(users=users, decide=1.0, events=0.0, location=0.0, seed=seed)


def fences(
    n: int = 200, *, seed: int = 0, mix: Mix | None = None
) -> list[tuple[str, dict[str, object]]]:
    """Return `n` circular fences scattered over the mix's area (malls, stations, campuses)."""
    m = mix or Mix()
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, object]]] = []
    for i in range(n):
        lat = m.lat0 + (rng.random() - 0.5) * m.span_deg
        lng = m.lng0 + (rng.random() - 0.5) * m.span_deg
        feature: dict[str, object] = {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [lng, lat]},
            "properties": {
                "radius_m": rng.uniform(50, 300),
                "buffer_m": 200,
                "dwell_s": 120,
                "service_cards": [f"card-{i}"],
            },
        }
        out.append((f"lf-{i}", feature))
    return out


def load_fences(base_url: str, n: int = 200, *, seed: int = 0) -> None:
    """PUT the benchmark's fences into a running service (loopback only)."""
    import urllib.request

    from load.openloop import check_loopback

    check_loopback(base_url)
    for fid, feature in fences(n, seed=seed):
        req = urllib.request.Request(
            f"{base_url}/v1/geofences/{fid}",
            data=_json.encode(feature),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

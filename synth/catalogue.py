"""A seeded synthetic catalogue with deliberately duplicated listings, and independent
per-slot recommenders over it (shared by GET /v1/recommendations and the simulator)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special

from dedupe import constants as C
from dedupe.items import Item, SlotItems
from dedupe.labels import label_listings
from synth.names import MERCHANT_CATEGORIES, NameMaker

__all__ = [
    "PROFILES",
    "Catalogue",
    "Listing",
    "SlotProfile",
    "homepage",
    "make_catalogue",
    "recommend",
    "true_duplicates",
]

KINDS = ("merchant", "service", "offer")
M_PER_DEG = math.pi * 6_371_008.8 / 180
# Hangzhou: a dense city with malls, metro and the payment-app habits the reference describes.
DEFAULT_CENTRE = (30.2741, 120.1551)


@dataclass(frozen=True, slots=True)
class Listing:
    """One catalogue row: an item id and what the upstream systems know about it."""

    item_id: str
    entity_id: str
    kind: str
    name: str
    category: str
    lat: float
    lng: float
    popularity: float
    truth: str  # ground-truth real-world thing; never visible to recommenders or rules
    offer_code: str | None = None


@dataclass(frozen=True, slots=True)
class SlotProfile:
    """What a slot's recommender favours: kinds (log weights) and closeness."""

    kind_logw: Mapping[str, float]
    distance_scale_m: float | None  # score falls by 1 per this many metres; None: ignore


# Unknown slot names get the "feed" profile, seeded by their own name.
PROFILES: dict[str, SlotProfile] = {
    "nearby": SlotProfile({"merchant": 0.0, "offer": -0.7, "service": -1.5}, 600.0),
    "services": SlotProfile({"service": 0.0, "merchant": -2.0, "offer": -3.0}, 4000.0),
    "offers": SlotProfile({"offer": 0.0, "merchant": -1.5, "service": -3.0}, 3000.0),
    "feed": SlotProfile({"merchant": 0.0, "offer": 0.0, "service": -0.5}, None),
}


@dataclass(frozen=True)
class Catalogue:
    """Listings, their offline labels and ground truth, and arrays for fast scoring."""

    seed: int
    centre: tuple[float, float]
    listings: tuple[Listing, ...]
    labels: Mapping[str, frozenset[str]]
    overlap: float
    categories: tuple[str, ...]
    lat: np.ndarray = field(repr=False)
    lng: np.ndarray = field(repr=False)
    log_popularity: np.ndarray = field(repr=False)
    kind_index: np.ndarray = field(repr=False)
    category_index: np.ndarray = field(repr=False)

    @property
    def truth(self) -> dict[str, str]:
        """Return item_id → ground-truth group."""
        return {x.item_id: x.truth for x in self.listings}

    def item(self, i: int, score: float) -> Item:
        """Return listing `i` as a wire item with `score`."""
        x = self.listings[i]
        labels = sorted(self.labels.get(x.item_id, ()))
        return Item(
            item_id=x.item_id, entity_id=x.entity_id, category=x.category, labels=labels,
            score=score,
        )  # fmt: skip


def _offset(rng: np.random.Generator, lat: float, lng: float, sd_m: float) -> tuple[float, float]:
    dy, dx = (float(v) for v in rng.normal(0.0, sd_m, 2))
    return lat + dy / M_PER_DEG, lng + dx / (M_PER_DEG * math.cos(math.radians(lat)))


def _jitter(rng: np.random.Generator, lat: float, lng: float) -> tuple[float, float]:
    # Most duplicate listings are geocoded a few metres apart; some at another entrance.
    dist_m = float(rng.uniform(2.0, 15.0) if rng.random() < 0.85 else rng.uniform(15.0, 80.0))
    theta = float(rng.uniform(0.0, 2 * math.pi))
    return (
        lat + dist_m * math.sin(theta) / M_PER_DEG,
        lng + dist_m * math.cos(theta) / (M_PER_DEG * math.cos(math.radians(lat))),
    )


def make_catalogue(
    seed: int = 0,
    *,
    n_merchants: int = 600,
    n_services: int = 80,
    n_offers: int = 300,
    dup_rate: float = 0.15,
    chain_rate: float = 0.1,
    overlap: float = 0.6,
    centre: tuple[float, float] = DEFAULT_CENTRE,
    city_sd_m: float = 3000.0,
) -> Catalogue:
    """Build a catalogue where `dup_rate` of things are listed more than once."""
    rng = np.random.default_rng(seed)
    names = NameMaker(rng)
    # Malls and stations: merchants cluster within tens of metres of each other there.
    hotspots = [_offset(rng, *centre, city_sd_m) for _ in range(12)]
    rows: list[Listing] = []
    n_truth = 0
    n_entity = 0

    def emit(kind: str, name: str, category: str, lat: float, lng: float,
             code: str | None = None) -> None:  # fmt: skip
        nonlocal n_truth, n_entity
        truth = f"t{n_truth}"
        n_truth += 1
        popularity = float(rng.lognormal(0.0, 1.0))
        n_entity += 1
        entity = f"e{n_entity}"
        rows.append(Listing("", entity, kind, name, category, lat, lng, popularity, truth, code))
        copies = (1 if rng.random() < 0.8 else 2) if rng.random() < dup_rate else 0
        for c in range(copies):
            # Some copies are the same entity under a second item id, the others a second
            # listing (its own entity id) that only the offline labels can tie back.
            if rng.random() >= 0.3:
                n_entity += 1
                entity = f"e{n_entity}"
            dup_code = f"{code.rsplit('-', 1)[0]}-{('WEB', 'POS')[c]}" if code else None
            d_lat, d_lng = _jitter(rng, lat, lng)
            rows.append(
                Listing("", entity, kind, names.variant(name), category, d_lat, d_lng,
                        popularity * float(rng.uniform(0.7, 1.3)), truth, dup_code)
            )  # fmt: skip

    merchants: list[tuple[str, str, float, float]] = []
    chains = [names.merchant(str(rng.choice(MERCHANT_CATEGORIES))) for _ in range(8)]
    for _ in range(n_merchants):
        if rng.random() < chain_rate:
            name, category = chains[int(rng.integers(len(chains)))]
        else:
            name, category = names.merchant(str(rng.choice(MERCHANT_CATEGORIES)))
        where = hotspots[int(rng.integers(len(hotspots)))] if rng.random() < 0.5 else centre
        lat, lng = _offset(rng, *where, 60.0 if where != centre else city_sd_m)
        merchants.append((name, category, lat, lng))
        emit("merchant", name, category, lat, lng)
    for _ in range(n_services):
        name, category = names.service()
        emit("service", name, category, *_offset(rng, *centre, city_sd_m))
    for k in range(n_offers):
        m_name, category, lat, lng = merchants[int(rng.integers(len(merchants)))]
        emit("offer", names.offer(m_name), category, lat, lng, f"OF{k:05d}-APP")

    # Shuffle so ids say nothing about duplication, then number them.
    order = rng.permutation(len(rows))
    listings = tuple(replace(rows[int(j)], item_id=f"i{n:05d}") for n, j in enumerate(order))
    categories = tuple(sorted({x.category for x in listings}))
    cat_pos = {c: i for i, c in enumerate(categories)}
    return Catalogue(
        seed=seed,
        centre=centre,
        listings=listings,
        labels=label_listings(listings),
        overlap=overlap,
        categories=categories,
        lat=np.array([x.lat for x in listings]),
        lng=np.array([x.lng for x in listings]),
        log_popularity=np.log([x.popularity for x in listings]),
        kind_index=np.array([KINDS.index(x.kind) for x in listings]),
        category_index=np.array([cat_pos[x.category] for x in listings]),
    )


def _hash(text: str) -> int:
    # crc32, not hash(): Python salts str hashes per process, and lists must be reproducible.
    return zlib.crc32(text.encode())


def recommend(
    catalogue: Catalogue,
    slot: str,
    *,
    user_id: str,
    n: int,
    now_ms: int,
    lat: float | None = None,
    lng: float | None = None,
    overlap: float | None = None,
) -> list[Item]:
    """Return a slot's top-n items for a user; the same inputs in one time bucket, same list."""
    profile = PROFILES.get(slot, PROFILES["feed"])
    bucket = now_ms // C.RECOMMEND_BUCKET_MS
    user = _hash(user_id)
    mix = catalogue.overlap if overlap is None else overlap
    size = len(catalogue.listings)
    # The shared part is what an upstream candidate model thinks of this user right now; every
    # slot sees it, which is why slots overlap. The specific part is each slot's own model.
    n_cat = len(catalogue.categories)
    taste = np.random.default_rng([catalogue.seed, user]).normal(0.0, 0.7, n_cat)
    shared_noise = np.random.default_rng([catalogue.seed, user, bucket]).normal(0.0, 1.0, size)
    shared = catalogue.log_popularity + taste[catalogue.category_index] + shared_noise
    specific = np.random.default_rng([catalogue.seed, user, _hash(slot), bucket]).normal(
        0.0, 1.5, size
    )
    logit = mix * shared + (1.0 - mix) * specific
    logit += np.array([profile.kind_logw.get(k, -5.0) for k in KINDS])[catalogue.kind_index]
    if profile.distance_scale_m is not None:
        u_lat = catalogue.centre[0] if lat is None else lat
        u_lng = catalogue.centre[1] if lng is None else lng
        dy = (catalogue.lat - u_lat) * M_PER_DEG
        dx = (catalogue.lng - u_lng) * M_PER_DEG * math.cos(math.radians(u_lat))
        logit -= np.hypot(dx, dy) / profile.distance_scale_m
    n = max(0, min(n, size))
    # Stable sort on -logit: ties resolve by catalogue order, so the list is reproducible.
    top = np.argsort(-logit, kind="stable")[:n]
    # expit: a logistic that does not overflow for requests far from the catalogue centre.
    scores = special.expit(logit[top])
    return [catalogue.item(int(i), round(float(s), 6)) for i, s in zip(top, scores, strict=True)]


def homepage(
    catalogue: Catalogue,
    slots: Sequence[str],
    *,
    user_id: str,
    n: int,
    now_ms: int,
    lat: float | None = None,
    lng: float | None = None,
) -> list[SlotItems]:
    """Return each slot's independent recommendations, in render order."""
    return [
        SlotItems(s, recommend(catalogue, s, user_id=user_id, n=n, now_ms=now_ms, lat=lat, lng=lng))
        for s in slots
    ]


def true_duplicates(catalogue: Catalogue, slots: Sequence[SlotItems]) -> int:
    """Count shown items whose real-world thing already appears earlier on the screen."""
    truth = {x.item_id: x.truth for x in catalogue.listings}
    seen: set[str] = set()
    dups = 0
    for slot in slots:
        for item in slot.items:
            t = truth.get(item.item_id, item.item_id)
            dups += t in seen
            seen.add(t)
    return dups

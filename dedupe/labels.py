"""Offline equivalence labels: items that are the same place or the same offer under
different ids share a label, so the rules can treat them as one thing."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Collection, Iterable, Mapping, Sequence
from difflib import SequenceMatcher
from itertools import combinations
from typing import NamedTuple, Protocol

from dedupe import constants as C
from dedupe.solve import UnionFind

__all__ = [
    "Listing",
    "PairScore",
    "distance_m",
    "evaluate",
    "label_listings",
    "normalise_name",
    "offer_family",
]

EARTH_RADIUS_M = 6_371_008.8
# Below this, a one-letter typo is most of the name: "Cafe A" vs "Cafe B" must not merge.
FUZZY_MIN_LEN = 8


class Listing(Protocol):
    """What labelling reads from a catalogue row."""

    @property
    def item_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def lat(self) -> float: ...
    @property
    def lng(self) -> float: ...
    @property
    def offer_code(self) -> str | None: ...


class PairScore(NamedTuple):
    """Pairwise precision and recall of predicted equivalences against ground truth."""

    precision: float
    recall: float


def normalise_name(name: str) -> str:
    """Return the name reduced to case-folded letters and digits without accents."""
    # NFKC folds full-width and compatibility forms; NFKD afterwards splits accents off
    # so "Café" and "Cafe" meet; punctuation and whitespace carry no identity.
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", name).casefold())
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def offer_family(code: str) -> str:
    """Return an offer code's family: the part before the channel suffix ("OF12-APP" → "of12")."""
    return code.rsplit("-", 1)[0].strip().casefold()


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Return the great-circle distance in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def _digits(name: str) -> str:
    return "".join(ch for ch in name if ch.isdigit())


def _same_name(a: str, b: str, min_similarity: float) -> bool:
    if a == b:
        return True
    if min_similarity >= 1.0 or min(len(a), len(b)) < FUZZY_MIN_LEN:
        return False
    # Names differing in a number ("Parking P3" / "P4") are different places, not typos.
    if _digits(a) != _digits(b):
        return False
    return SequenceMatcher(None, a, b, autojunk=False).ratio() >= min_similarity


def _place_pairs(
    listings: Sequence[Listing], names: Sequence[str], radius_m: float, min_similarity: float
) -> Iterable[tuple[int, int]]:
    # Block on a grid of radius-sized cells in a local equirectangular frame: two listings
    # within radius_m are in the same or adjacent cells, so only 3x3 neighbourhoods compare.
    if not listings:
        return
    lat0 = math.radians(sum(x.lat for x in listings) / len(listings))
    m_per_deg = math.pi * EARTH_RADIUS_M / 180
    cells: dict[tuple[int, int], list[int]] = {}
    for i, x in enumerate(listings):
        cx = math.floor(x.lng * m_per_deg * math.cos(lat0) / radius_m)
        cy = math.floor(x.lat * m_per_deg / radius_m)
        cells.setdefault((cx, cy), []).append(i)
    for (cx, cy), members in cells.items():
        near = [
            j for dx in (-1, 0, 1) for dy in (-1, 0, 1) for j in cells.get((cx + dx, cy + dy), ())
        ]
        for i in members:
            a = listings[i]
            for j in near:
                if j <= i or not names[i] or not names[j]:
                    continue
                b = listings[j]
                if distance_m(a.lat, a.lng, b.lat, b.lng) > radius_m:
                    continue
                if _same_name(names[i], names[j], min_similarity):
                    yield i, j


def _components(n: int, pairs: Iterable[tuple[int, int]]) -> list[list[int]]:
    uf = UnionFind(n)
    for i, j in pairs:
        uf.union(i, j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(uf.find(i), []).append(i)
    # Roots are smallest members, so this numbering follows catalogue order: stable labels.
    return [g for _, g in sorted(groups.items()) if len(g) > 1]


def label_listings(
    listings: Sequence[Listing],
    *,
    radius_m: float = C.SAME_PLACE_RADIUS_M,
    min_similarity: float = 0.9,
) -> dict[str, frozenset[str]]:
    """Return item_id → labels: "m:<n>" same place (name + location), "o:<n>" same offer."""
    # An offer's identity is its code family: two campaigns with the same text at the same
    # shop are different offers, so offers never match by name.
    names = ["" if x.offer_code else normalise_name(x.name) for x in listings]
    places = _components(len(listings), _place_pairs(listings, names, radius_m, min_similarity))
    by_family: dict[str, list[int]] = {}
    for i, x in enumerate(listings):
        if x.offer_code:
            by_family.setdefault(offer_family(x.offer_code), []).append(i)
    offers = _components(
        len(listings),
        ((g[0], j) for g in by_family.values() for j in g[1:]),
    )
    labels: dict[str, set[str]] = {x.item_id: set() for x in listings}
    for prefix, comps in (("m", places), ("o", offers)):
        for n, comp in enumerate(comps, start=1):
            for i in comp:
                labels[listings[i].item_id].add(f"{prefix}:{n}")
    return {item_id: frozenset(ls) for item_id, ls in labels.items()}


def _pairs(groups: Iterable[Collection[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for members in groups:
        out.update(combinations(sorted(set(members)), 2))
    return out


def evaluate(labels: Mapping[str, Collection[str]], ground_truth: Mapping[str, str]) -> PairScore:
    """Score labels against item_id → true group: over pairs, sharing a label vs same group."""
    by_label: dict[str, list[str]] = {}
    for item_id, ls in labels.items():
        for label in ls:
            by_label.setdefault(label, []).append(item_id)
    by_truth: dict[str, list[str]] = {}
    for item_id, group in ground_truth.items():
        by_truth.setdefault(group, []).append(item_id)
    predicted, true = _pairs(by_label.values()), _pairs(by_truth.values())
    hits = len(predicted & true)
    # No predictions is vacuously precise; no true pairs is vacuously fully recalled.
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(true) if true else 1.0
    return PairScore(precision, recall)

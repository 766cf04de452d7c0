"""Offline equivalence labels: name normalisation, blocking, and precision/recall on the
synthetic catalogue's ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dedupe import evaluate, label_listings, normalise_name, offer_family
from dedupe.labels import distance_m
from synth.catalogue import make_catalogue

LAT, LNG = 30.2741, 120.1551
M_PER_DEG_LAT = 111_195.0


@dataclass(frozen=True)
class Row:
    item_id: str
    name: str
    lat: float = LAT
    lng: float = LNG
    offer_code: str | None = None


def north(metres: float) -> float:
    return LAT + metres / M_PER_DEG_LAT


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Blue Bottle Café", "blue bottle cafe"),
        ("Blue  Bottle Café ", "Blue Bottle Café"),
        ("Joe's Diner.", "JOES DINER"),
        ("Ｂｌｕｅ　Ｋｏｉ", "blue koi"),  # full-width forms fold under NFKC
        ("Straße", "STRASSE"),  # casefold, not lower()
        ("Blue-Bottle", "Blue Bottle"),
    ],
)
def test_cosmetic_spellings_normalise_equal(a: str, b: str) -> None:
    assert normalise_name(a) == normalise_name(b)


@pytest.mark.parametrize(("a", "b"), [("Parking P3", "Parking P4"), ("Blue Koi", "Red Koi")])
def test_different_names_stay_different(a: str, b: str) -> None:
    assert normalise_name(a) != normalise_name(b)


def test_offer_family_drops_the_channel_suffix() -> None:
    assert offer_family("OF00042-APP") == offer_family("of00042-web") == "of00042"
    assert offer_family("PLAIN") == "plain"


def test_same_name_within_radius_shares_a_label_and_far_branches_do_not() -> None:
    rows = [
        Row("a", "Golden Dragon Kitchen"),
        Row("b", "GOLDEN  DRAGON KITCHEN.", lat=north(12)),
        Row("c", "Golden Dragon Kitchen", lat=north(900)),  # another branch of a chain
        Row("d", "Golden Dragon Kitchn", lat=north(20)),  # typo: fuzzy match
        Row("e", "Golden Dragon Bistro", lat=north(5)),  # different shop next door
        Row("f", "Parking P3"),
        Row("g", "Parking P4", lat=north(3)),  # digits differ: never fuzzy-merged
    ]
    labels = label_listings(rows, radius_m=50)
    assert labels["a"] == labels["b"] == labels["d"] == {"m:1"}
    assert labels["c"] == labels["e"] == labels["f"] == labels["g"] == frozenset()
    exact = label_listings(rows, radius_m=50, min_similarity=1.0)
    assert exact["a"] == exact["b"] and not exact["d"]


def test_radius_is_a_distance_not_a_grid_cell() -> None:
    # Adjacent grid cells are compared, but only pairs within radius_m match.
    assert distance_m(LAT, LNG, north(49), LNG) == pytest.approx(49, abs=0.1)
    rows = [Row("a", "Jade Fox Spa"), Row("b", "Jade Fox Spa", lat=north(49))]
    rows += [Row("c", "Lucky Pine Gym"), Row("d", "Lucky Pine Gym", lat=north(51))]
    labels = label_listings(rows, radius_m=50)
    assert labels["a"] == labels["b"] != frozenset()
    assert labels["c"] == labels["d"] == frozenset()


def test_offers_match_by_code_family_not_by_text() -> None:
    rows = [
        Row("a", "10% off at Koi Cafe", offer_code="OF1-APP"),
        Row("b", "10% OFF at Koi Café", offer_code="OF1-WEB"),
        Row("c", "10% off at Koi Cafe", offer_code="OF2-APP"),  # another campaign, same text
    ]
    labels = label_listings(rows)
    assert labels["a"] == labels["b"] == {"o:1"}
    assert labels["c"] == frozenset()


def test_evaluate_counts_pairs() -> None:
    truth = {"a": "t1", "b": "t1", "c": "t1", "d": "t2", "e": "t3"}
    labels = {"a": {"m:1"}, "b": {"m:1"}, "c": set(), "d": {"m:2"}, "e": {"m:2"}}
    # Predicted pairs: (a,b) right, (d,e) wrong; true pairs (a,b), (a,c), (b,c).
    assert evaluate(labels, truth) == pytest.approx((0.5, 1 / 3))
    assert evaluate({}, {"a": "t1"}) == (1.0, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_on_the_synthetic_catalogue(seed: int) -> None:
    cat = make_catalogue(seed)
    precision, recall = evaluate(cat.labels, cat.truth)
    # Measured 0.97-1.00 / 0.87-0.90 (seeds 0-5). Misses are by design: branch suffixes and
    # listings geocoded beyond the radius. False positives: near-identical names in one mall.
    assert precision >= 0.95
    assert recall >= 0.8
    _, exact_recall = evaluate(label_listings(cat.listings, min_similarity=1.0), cat.truth)
    assert exact_recall < recall  # fuzzy matching earns its keep on typos

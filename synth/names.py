"""Synthetic place, service and offer names, and the spelling variants duplicate listings use."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["MERCHANT_CATEGORIES", "SERVICE_CATEGORIES", "VARIANTS", "NameMaker"]

_ADJECTIVES = (
    "Golden", "Blue", "Red", "Little", "Happy", "Green", "Silver", "Lucky", "Royal", "Sunny",
    "Urban", "Old", "Jade", "Lotus", "Bamboo", "Harbour", "West Lake", "Maple", "Crystal",
    "Orchid", "Star", "Moon", "River", "Hill",
)  # fmt: skip
_NOUNS = (
    "Dragon", "Garden", "Bridge", "Lantern", "Panda", "Tiger", "Crane", "Pearl", "Fox",
    "Willow", "Peak", "Cloud", "Tea", "Rice", "Fish", "Peach", "Plum", "Pine", "Koi", "Phoenix",
)  # fmt: skip
_TYPES: dict[str, tuple[str, ...]] = {
    "food": ("Kitchen", "Noodle House", "Dumpling Bar", "Bistro", "Grill", "Hot Pot", "Diner"),
    "coffee": ("Café", "Coffee", "Tea House", "Espresso Bar", "Bakery"),
    "grocery": ("Market", "Mart", "Grocer", "Fresh"),
    "fashion": ("Boutique", "Apparel", "Shoes", "Outfitters"),
    "electronics": ("Electronics", "Mobile", "Digital"),
    "beauty": ("Salon", "Spa", "Beauty"),
    "fitness": ("Gym", "Yoga", "Fitness"),
}
MERCHANT_CATEGORIES = tuple(_TYPES)
_DISTRICTS = ("Xihu", "Binjiang", "Gongshu", "Shangcheng", "Xiaoshan", "Yuhang", "Qiantang")
_SERVICES: dict[str, tuple[str, ...]] = {
    "transport": ("{d} Metro Card Top-up", "{d} Bike Share", "{d} Bus Pass"),
    "parking": ("{d} Parking P{n}", "{d} Park & Ride {n}"),
    "charging": ("{d} EV Charging Hub {n}",),
    "bills": ("{d} Water Bill", "{d} Electricity Bill", "{d} Gas Bill"),
    "telecom": ("{d} Mobile Top-up", "{d} Broadband"),
}
SERVICE_CATEGORIES = tuple(_SERVICES)
_OFFERS = (
    "{p}% off at {m}", "Spend 100 save {p} at {m}", "Free drink at {m}", "{p}% cashback at {m}",
    "Buy one get one at {m}",
)  # fmt: skip
# How duplicate listings spell the same name: most are cosmetic (normalisation undoes them),
# typos need fuzzy matching, and a branch suffix defeats both, as it does in real catalogues.
VARIANTS = ("same", "upper", "lower", "spaces", "punct", "accent", "fullwidth", "typo", "suffix")
_VARIANT_P = (0.15, 0.12, 0.12, 0.14, 0.12, 0.08, 0.05, 0.14, 0.08)


def _fullwidth(text: str) -> str:
    # The full-width forms sit at a fixed offset from ASCII; the ideographic space is U+3000.
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


class NameMaker:
    """Draw unique names and their variants from one seeded generator."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def _unique(self, make: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        for _ in range(1000):
            name, category = make()
            if name not in self.used:
                self.used.add(name)
                return name, category
        # The word lists hold thousands of names; exhausting them is a configuration error.
        raise ValueError("name space exhausted: too many listings for the word lists")

    def merchant(self, category: str) -> tuple[str, str]:
        """Return a fresh merchant name and its category."""
        types = _TYPES[category]
        return self._unique(
            lambda: (
                f"{self._pick(_ADJECTIVES)} {self._pick(_NOUNS)} {self._pick(types)}",
                category,
            )
        )

    def service(self) -> tuple[str, str]:
        """Return a fresh service name and its category."""

        def make() -> tuple[str, str]:
            category = self._pick(SERVICE_CATEGORIES)
            template = self._pick(_SERVICES[category])
            name = template.format(d=self._pick(_DISTRICTS), n=int(self.rng.integers(1, 40)))
            return name, category

        return self._unique(make)

    def offer(self, merchant: str) -> str:
        """Return an offer name at `merchant` (distinct offers may share a text)."""
        pct = self._pick(("5", "10", "15", "20", "30"))
        return self._pick(_OFFERS).format(p=pct, m=merchant)

    def variant(self, name: str) -> str:
        """Return how a duplicate listing spells `name`."""
        kind = VARIANTS[int(self.rng.choice(len(VARIANTS), p=_VARIANT_P))]
        if kind == "upper":
            return name.upper()
        if kind == "lower":
            return name.lower()
        if kind == "spaces":
            return " " + name.replace(" ", "  ", 1) + " "
        if kind == "punct":
            return name.replace(" ", " - ", 1) + "."
        if kind == "accent":
            return name.replace("Café", "Cafe") if "Café" in name else name.replace("e", "é", 1)
        if kind == "fullwidth":
            return _fullwidth(name)
        if kind == "typo":
            letters = [i for i, c in enumerate(name) if c.isalpha()][1:-1]
            if letters:
                i = letters[int(self.rng.integers(len(letters)))]
                return name[:i] + name[i + 1 :]
            return name
        if kind == "suffix":
            return f"{name} ({self._pick(_DISTRICTS)} branch)"
        return name

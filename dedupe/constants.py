"""Tunable defaults of the dedupe core, each with the reason for its value."""

from __future__ import annotations

# Ids become log fields and cache keys on the device; 128 matches refreshd's ID_MAX_LEN.
ID_MAX_LEN = 128
# Slot names and categories are short enum-like strings; 64 leaves room for namespacing.
NAME_MAX_LEN = 64
# A homepage has a handful of slots; 32 is far beyond any real layout yet bounds the work.
MAX_SLOTS = 32
# A slot renders tens of cards; 200 lets a recommender over-fetch for dedupe headroom.
MAX_ITEMS_PER_SLOT = 200
# Equivalence labels per item: a merchant and an offer family rarely exceed a few.
MAX_LABELS_PER_ITEM = 32
# Impression history the device sends: a day of a heavy user's distinct cards.
MAX_RECENT = 2000
# Scores are recommender relevances; the bound only rejects absurd values (and ±inf).
SCORE_MAX = 1e9

# More rules than rule kinds can only be a duplicated or mistyped config.
MAX_RULES = 16
# A category cap above the largest possible screen is meaningless.
CATEGORY_CAP_MAX = MAX_SLOTS * MAX_ITEMS_PER_SLOT
# "Recently shown" longer than a week is a catalogue exclusion, not a dedupe rule.
RECENTLY_SHOWN_MAX_MINUTES = 7 * 24 * 60
# Re-showing a card within half an hour reads as a stale homepage; an hour would starve
# small catalogues (a user opens the app ~10 times a day).
DEFAULT_RECENTLY_SHOWN_MINUTES = 30

# Past this many contested items the MILP may take longer than a request budget; greedy is
# within a few per cent of optimal on realistic homepages (see load/bench_dedupe.py).
OPTIMAL_MAX_ITEMS = 2000
# The solver's wall-clock budget: a homepage render cannot wait longer than this for dedupe.
MILP_TIME_LIMIT_S = 0.25

# Device slot cache: recommendations older than this are stale (six fallback refresh
# intervals of 5 min), so a slot past its TTL neither renders nor blocks other slots.
SLOT_TTL_S = 1800

# Label matching: duplicate listings of one place are geocoded within metres of each other,
# while distinct branches of a chain are usually hundreds of metres apart.
SAME_PLACE_RADIUS_M = 50.0

# Recommendations for one user and slot are stable for 10 min, like a recommender's cache,
# so a repeated request in that window returns the same list.
RECOMMEND_BUCKET_MS = 10 * 60_000

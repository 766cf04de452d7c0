"""Tunable geo defaults, each with the reason for its value."""

from __future__ import annotations

# --- fences (validated in geo.fence) ---------------------------------------------------------
# 200 m is roughly two minutes' walk: time enough to warm the place's cards before arrival.
DEFAULT_BUFFER_M = 200.0
# 50 km covers an airport approach by car; beyond that "near the place" stops meaning anything.
MAX_BUFFER_M = 50_000.0
# Two minutes separates visiting a place from walking past it.
DEFAULT_DWELL_S = 120.0
# A day: a longer dwell can never be observed between two daily app sessions.
MAX_DWELL_S = 86_400.0
# 100 km fits the largest real places (a national park, a metro area) as one circle.
MAX_RADIUS_M = 100_000.0
# Polygon vertices farther than this from the centre distort a local projection by > 0.03 %.
MAX_REACH_M = 150_000.0
# Bounded vertex count keeps one fence's prepared geometry and H3 cover to milliseconds.
MAX_VERTICES = 10_000
# Anything smaller than a square metre is a digitising accident, not a place.
MIN_AREA_M2 = 1.0
# Circles become polygons with 4 * 32 vertices: chord sag is 0.03 % of the radius.
CIRCLE_QUAD_SEGS = 32
# Longest straight segment when a metric polygon goes back to lng/lat: lng/lat-straight and
# metric-straight edges then differ by millimetres, far below EDGE_MARGIN_M.
SEGMENTIZE_M = 500.0
# Polygons with at most this many vertices get a plain-Python distance (geo.local.Outline):
# below it a loop over edges beats creating a Shapely point.
OUTLINE_MAX = 48
# The fast local model also covers this much around the buffer, where H3 edge cells reach.
MODEL_PAD_M = 300.0
# Points this close to an edge count as on it: projection round-off is ~1e-9 m, GPS ~5 m.
ON_EDGE_TOLERANCE_M = 1e-3

# --- index -----------------------------------------------------------------------------------
# Resolution 10 (~76 m edges, 0.015 km²) measured best (load/bench_geo.py, 2000 city fences):
# res 9 cells are as wide as a fence, so fixes near fences almost all need the exact test
# (~35 % fewer fixes/s); res 11 needs ~6x the cells and ~3x the build time for no gain.
INDEX_RES = 10
# A fence whose cover would exceed this many cells is indexed at a coarser resolution, so one
# 100 km circle costs memory like a few hundred city fences instead of millions of cells.
MAX_CELLS_PER_FENCE = 20_000
# A cell is "wholly inside" only with this much room: it absorbs the difference between H3's
# great-circle cell edges and straight edges in a fence's local frame (millimetres at res 10).
EDGE_MARGIN_M = 1.0

# --- coverage --------------------------------------------------------------------------------
# "Nearby" recommendations go stale after about a kilometre of movement.
R_MAX_M = 1_000.0
# Extra distance past R + accuracy before the circle counts as left: absorbs fix jitter.
LEAVE_MARGIN_M = 10.0

# --- tracker ---------------------------------------------------------------------------------
# Two agreeing fixes reject a single GPS outlier yet add only one fix interval of latency.
N_ENTER = 2
# Exits are debounced the same way: a false exit reclaims cards the user is looking at.
N_EXIT = 2
# Hysteresis: exit needs max(10 % of the fence's size, 20 m) beyond the edge, so GPS jitter
# around the edge of a small fence or a large one does not flap enter/exit.
HYSTERESIS_FRACTION = 0.10
HYSTERESIS_MIN_M = 20.0

# --- cadence ---------------------------------------------------------------------------------
# Faster than this drains the battery for no gain: consecutive fixes would overlap in noise.
MIN_FIX_S = 5
# 15 minutes: the OS batches background location about this often anyway.
MAX_FIX_S = 900
# Inside a buffer, entry should be detected within ~two fixes, i.e. about 20 s.
BUFFER_FIX_S = 10
# Urban driving rarely exceeds 30 m/s (108 km/h); the plausible speed when none is reported.
DEFAULT_MAX_SPEED_MPS = 30.0
# A device that reports standing still may start walking at any moment.
MIN_SPEED_MPS = 1.5

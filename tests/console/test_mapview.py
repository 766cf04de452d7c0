"""The fences map draws each fence's outline to within its tolerance, and marks a selection
without drawing again."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import shapely

from geo.fence import parse_feature
from refreshd.console import mapview

CIRCLE = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [2.35, 48.85]},
          "properties": {"radius_m": 140, "buffer_m": 60}}  # fmt: skip
SQUARE = {"type": "Feature", "properties": {"buffer_m": 50},
          "geometry": {"type": "Polygon", "coordinates": [[[2.340, 48.850], [2.346, 48.850],
                       [2.346, 48.854], [2.340, 48.854], [2.340, 48.850]]]}}  # fmt: skip


@pytest.mark.parametrize("feature", [CIRCLE, SQUARE], ids=["circle", "polygon"])
@pytest.mark.parametrize("tolerance_m", [0.5, 4.0, 32.0])
def test_outlines_stay_within_the_tolerance_of_the_exact_regions(
    feature: dict[str, Any], tolerance_m: float
) -> None:
    fence = parse_feature("f", feature)
    exact = [fence.region_m(0.0), fence.region_m(fence.buffer_m, outer=True)]
    ((inner, outer),) = mapview.outlines([fence], tolerance_m)
    full = sum(len(r) for r in mapview.outlines([fence])[0][1])
    assert sum(len(r) for r in outer) < full  # fewer vertices than the service's own rings
    for rings, region in zip((inner, outer), exact, strict=True):
        assert rings
        for ring in rings:
            x, y = fence.frame.to_xy_many(ring[:, 0], ring[:, 1])
            drawn = shapely.LinearRing(np.column_stack([x, y]))
            # Every drawn vertex lies on the exact edge, within the tolerance, and back.
            assert drawn.hausdorff_distance(region.exterior) <= tolerance_m + 1e-6


def test_a_selection_marks_one_fence_of_the_same_drawing() -> None:
    fences = [parse_feature("a", CIRCLE), parse_feature("b", SQUARE)]
    drawn = mapview.layout(fences, link="/f?id=")
    plain, chosen = drawn.render(), drawn.render("b")
    assert plain.count('class="fence"') == 2 and "selected" not in plain
    assert chosen.count('class="fence selected"') == 1
    assert chosen.replace(" selected", "") == plain
    assert 'href="/f?id=b" data-fence="b"' in chosen

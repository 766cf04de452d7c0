"""Exact maximum-weight selection under at-most-one groups and per-category capacities.

Why `scipy.optimize.milp` and not `linear_sum_assignment`: an item sits in an id group, an
entity group and any number of label groups, so the conflict structure is a hypergraph; it is
a bipartite matching only in special cases, and category caps are not an assignment at all.
The MILP covers every case exactly. It is only paid for where it is needed: the problem splits
into independent components (items linked by a shared group or a binding cap), a singleton is
kept, a component that one group covers entirely keeps its best item (closed form), and only
the remaining components go to the solver, together, as one MILP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["Selection", "UnionFind", "select"]

Status = Literal["optimal", "time_limited", "too_large", "failed"]


@dataclass(frozen=True, slots=True)
class Selection:
    """Chosen item indices (None when nothing usable came back) and how they were found."""

    chosen: frozenset[int] | None
    status: Status
    solver_items: int  # how many items the MILP saw (0: closed form only)


class UnionFind:
    """Disjoint sets over 0..n-1; each root is its set's smallest member."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        """Return the root of `a`'s set."""
        while self.parent[a] != a:
            # Path halving keeps trees flat without recursion.
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        """Merge the sets of `a` and `b`."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def select(
    weights: Sequence[float],
    groups: Sequence[Sequence[int]],
    caps: Sequence[tuple[Sequence[int], int]],
    *,
    max_items: int,
    time_limit_s: float,
) -> Selection:
    """Maximise Σ weight over a subset with ≤ 1 per group and ≤ k per capped item set."""
    n = len(weights)
    groups = [g for g in groups if len(g) > 1]
    # A cap only binds when more items than its capacity compete for it.
    caps = [(members, k) for members, k in caps if len(members) > k]
    # UnionFind inlined: this runs on every optimal call, and the method calls (~200 finds and
    # unions per 8 x 20 homepage) were a quarter of its time. Roots stay each set's smallest
    # member, so components, and everything below, do not depend on the merge order.
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]  # path halving
            a = parent[a]
        return a

    for members in [*groups, *(m for m, _ in caps)]:
        root = find(members[0])
        for other in members[1:]:
            r = find(other)
            if r < root:
                parent[root] = r
                root = r
            elif r > root:
                parent[r] = root
    components: dict[int, list[int]] = {}
    for i in range(n):
        components.setdefault(find(i), []).append(i)
    capped_roots = {find(m[0]) for m, _ in caps}
    covering: dict[int, int] = {}  # component root -> size of its largest group
    for g in groups:
        root = find(g[0])
        size = len(g)
        if size > covering.get(root, 0):
            covering[root] = size

    chosen: set[int] = set()
    hard: list[int] = []
    for root, members in components.items():
        if len(members) == 1 and root not in capped_roots:
            chosen.add(members[0])
        elif root not in capped_roots and covering.get(root) == len(members):
            # One group holds every member: keep the best; ties go to render order (lowest i).
            chosen.add(max(members, key=lambda i: (weights[i], -i)))
        else:
            hard.extend(members)
    if not hard:
        return Selection(frozenset(chosen), "optimal", 0)
    if len(hard) > max_items:
        return Selection(None, "too_large", len(hard))
    picked, status = _milp(weights, groups, caps, sorted(hard), time_limit_s)
    if picked is None:
        return Selection(None, status, len(hard))
    return Selection(frozenset(chosen | picked), status, len(hard))


def _milp(
    weights: Sequence[float],
    groups: Sequence[Sequence[int]],
    caps: Sequence[tuple[Sequence[int], int]],
    hard: list[int],
    time_limit_s: float,
) -> tuple[set[int] | None, Status]:
    # Imported here: scipy.optimize costs ~2 s to import, and greedy-only callers (the device
    # simulator, most homepages via the closed form) never need it.
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    local = {item: j for j, item in enumerate(hard)}
    rows: list[int] = []
    cols: list[int] = []
    upper: list[float] = []
    # Components are closed under groups and caps, so a constraint is wholly in or out of `hard`.
    for members, k in [*((g, 1) for g in groups), *caps]:
        if members[0] not in local:
            continue
        r = len(upper)
        rows.extend([r] * len(members))
        cols.extend(local[m] for m in members)
        upper.append(float(k))
    n = len(hard)
    a = coo_array((np.ones(len(rows)), (rows, cols)), shape=(len(upper), n)).tocsr()
    c = -np.array([weights[i] for i in hard], dtype=float)
    res = milp(
        c,
        constraints=LinearConstraint(a, -np.inf, np.array(upper)),
        integrality=np.ones(n),
        bounds=Bounds(0.0, 1.0),
        # mip_rel_gap=0: the default 1e-4 gap would let "optimal" lose to greedy by rounding.
        options={"time_limit": time_limit_s, "mip_rel_gap": 0.0},
    )
    if res.x is None or not np.all(np.isfinite(res.x)):
        return None, "failed" if res.status != 1 else "time_limited"
    picked = {hard[j] for j in np.flatnonzero(res.x > 0.5)}
    status: Status = "optimal" if res.status == 0 else "time_limited"
    return picked, status

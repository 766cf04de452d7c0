"""The champion's history: each change of `model:current`, and where a rollback goes.

Every switch of the champion (a retrain or bootstrap publishing, an operator promoting or
rolling back) is recorded with who did it, when, from which version and to which. A rollback
returns to the champion before the current one and undoes one change: rolling back twice after
two promotions returns to the model before both (a stack), not back and forth between two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

__all__ = ["Action", "ModelChange", "previous_champion"]

Action = Literal["publish", "promote", "rollback"]


class ModelChange(msgspec.Struct, kw_only=True):
    """One change of the champion (an entry of GET /v1/models/history)."""

    action: Action
    who: str  # the operator (X-Operator), "api", or the job: "retrain", "bootstrap", ...
    ts: int  # when, epoch ms
    from_version: str | None = msgspec.field(name="from")  # None: there was no champion
    to_version: str = msgspec.field(name="to")
    forced: bool = False  # promoted past the not-worse check


def previous_champion(history: Sequence[ModelChange]) -> str | None:
    """Return the version a rollback returns to (history newest first); None if none.

    Each publish or promotion pushes the champion it replaced; each rollback pops one.
    """
    replaced: list[str | None] = []
    for change in reversed(history):
        if change.action == "rollback":
            if replaced:
                replaced.pop()
        else:
            replaced.append(change.from_version)
    return replaced[-1] if replaced else None

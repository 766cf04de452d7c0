"""HTTP shell of the policy document: GET/PUT /v1/policy (one item, versioned)."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from refreshd import constants as C
from refreshd.core.policy import (
    Node,
    PolicyDoc,
    PolicyError,
    parse_policy,
    policy_to_json,
)
from refreshd.http.keys import POLICY
from refreshd.http.resources import ConfigResource, ExpectedVersion
from refreshd.http.routing import Route
from refreshd.live.policybook import ITEM, KIND


class PolicyPut(PolicyDoc, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Documentation shape of a PUT body (validation is `refreshd.core.policy.parse_policy`)."""

    version: ExpectedVersion = None


class PolicyOut(msgspec.Struct):
    mode: Literal["normal", "fallback"]
    nodes: tuple[Node, ...]
    version: int  # 0: never written, the default ladder


def _parse(item_id: str, body: Any) -> PolicyDoc:
    if not isinstance(body, dict):
        raise PolicyError("the policy document must be a JSON object", None)
    return parse_policy(body)  # PolicyError is a 422 naming the node


RESOURCE: ConfigResource[PolicyDoc] = ConfigResource(
    kind=KIND,
    what="policy",
    path="/v1/policy",
    single=ITEM,
    default=lambda app: app[POLICY].default,
    parse=_parse,
    to_json=policy_to_json,
    item_body=lambda _id, doc, version: {**doc, "version": version},
    book=POLICY,
    put_summary="Replace the policy document: the decision ladder's nodes, in order, and mode "
    "(PUT the default to reset)",
    get_summary="The policy document every worker decides with (the default until one is PUT)",
    request_doc=PolicyPut,
    item_doc=PolicyOut,
    history=C.POLICY_HISTORY,  # a replay decides with the document of the decision's time
)
ROUTES: tuple[Route, ...] = RESOURCE.routes()

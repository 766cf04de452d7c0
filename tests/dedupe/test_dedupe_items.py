"""Wire shapes of POST /v1/dedupe: the HTTP layer decodes straight into them."""

from __future__ import annotations

import msgspec
import pytest

from dedupe import (
    DedupeInputError,
    DedupeRequest,
    Item,
    RuleConfigError,
    allocate_request,
    decode_request,
    iter_items,
    validate_request,
)

NOW_MS = 1_700_000_000_000
# The POST /v1/dedupe example of the API contract (docs/api.md).
DESIGN_BODY = b"""{"slots": [{"slot": "nearby", "items": [{"item_id": "i1", "entity_id": "e1",
  "category": "food", "labels": ["m:42"], "score": 0.9}]}],
  "recent": [{"item_id": "i9", "ts": 1700000000000}], "strategy": "optimal"}"""


def test_the_design_example_decodes() -> None:
    req = decode_request(DESIGN_BODY)
    assert req.strategy == "optimal"
    assert req.rules is None
    assert req.slots[0].items[0] == Item(
        item_id="i1", entity_id="e1", category="food", labels=["m:42"], score=0.9
    )
    assert req.recent[0].ts == NOW_MS
    assert list(iter_items(req.slots)) == [("nearby", req.slots[0].items[0])]


def test_defaults_fill_optional_fields() -> None:
    req = decode_request(b'{"slots": [{"slot": "feed", "items": [{"item_id": "a",'
                         b' "entity_id": "e", "category": "c"}]}]}')  # fmt: skip
    assert req.strategy == "greedy"
    assert req.recent == []
    assert req.slots[0].items[0].labels == []
    assert req.slots[0].items[0].score == 0.0


def item_json(**changes: object) -> dict[str, object]:
    return {"item_id": "a", "entity_id": "e", "category": "c", "score": 0.5, **changes}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"slots": [{"slot": "s", "items": [item_json(item_id="")]}]}, "item_id"),
        ({"slots": [{"slot": "s", "items": [item_json(entity_id="x" * 129)]}]}, "entity_id"),
        ({"slots": [{"slot": "s", "items": [item_json(category="")]}]}, "category"),
        ({"slots": [{"slot": "s", "items": [item_json(score=-0.1)]}]}, "score"),
        ({"slots": [{"slot": "s", "items": [item_json(score=1e10)]}]}, "score"),
        ({"slots": [{"slot": "s", "items": [item_json(labels=[""])]}]}, "labels"),
        ({"slots": [{"slot": "s", "items": [item_json()] * 201}]}, "items"),
        ({"slots": [{"slot": "s", "items": []}] * 33}, "slots"),
        ({"slots": [{"slot": "", "items": []}]}, "slot"),
        ({"slots": [], "strategy": "best"}, "strategy"),
        ({"slots": [], "recent": [{"item_id": "a", "ts": -1}]}, "ts"),
        ({"slots": [{"slot": "s", "items": [{"item_id": "a"}]}]}, "entity_id"),
    ],
)
def test_out_of_range_values_are_rejected_with_a_path(body: object, path: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=path):
        decode_request(msgspec.json.encode(body))


def test_non_finite_scores_cannot_be_decoded() -> None:
    for text in (b"1e400", b"NaN", b"Infinity"):
        body = b'{"slots": [{"slot": "s", "items": [{"item_id": "a", "entity_id": "e",' \
            b' "category": "c", "score": ' + text + b"}]}]}"  # fmt: skip
        with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
            decode_request(body)


def test_allocate_request_uses_default_rules_or_the_bodys_rules() -> None:
    dup = [item_json(item_id="a", entity_id="e1"), item_json(item_id="b", entity_id="e1")]
    body = {"slots": [{"slot": "s", "items": dup}]}
    req = msgspec.convert(body, DedupeRequest)
    assert [d.rule for d in allocate_request(req, now_ms=NOW_MS).dropped] == ["same_entity"]
    req = msgspec.convert({**body, "rules": [{"rule": "exact_id"}]}, DedupeRequest)
    assert allocate_request(req, now_ms=NOW_MS).dropped == []
    req = msgspec.convert({**body, "rules": [{"rule": "category_cap", "k": 0}]}, DedupeRequest)
    with pytest.raises(RuleConfigError) as err:
        allocate_request(req, now_ms=NOW_MS)
    assert err.value.field == "rules[0].k"


def test_duplicate_slot_names_are_rejected_naming_the_second() -> None:
    slot = {"items": [item_json()]}
    names = ["nearby", "feed", "nearby", "feed"]
    req = msgspec.convert({"slots": [{**slot, "slot": n} for n in names]}, DedupeRequest)
    with pytest.raises(DedupeInputError) as err:
        allocate_request(req, now_ms=NOW_MS)
    assert err.value.field == "slots[2].slot"
    assert "nearby" in err.value.message
    # One error type: callers that catch RuleConfigError (the HTTP layer) see this too.
    assert isinstance(err.value, RuleConfigError) and isinstance(err.value, ValueError)
    # Slot names are checked before rules: the first field in the body is reported.
    bad_rules = msgspec.structs.replace(req, rules=[{"rule": "nope"}])
    with pytest.raises(RuleConfigError, match=r"slots\[2\]\.slot"):
        allocate_request(bad_rules, now_ms=NOW_MS)


def test_distinct_slot_names_pass_validation() -> None:
    body: dict[str, object] = {
        "slots": [{"slot": n, "items": []} for n in ("nearby", "Nearby", "feed")]
    }
    validate_request(msgspec.convert(body, DedupeRequest))


def test_items_are_immutable_values() -> None:
    item = Item(item_id="a", entity_id="e", category="c")
    with pytest.raises(AttributeError):
        item.score = 1.0  # type: ignore[misc]

"""derive_id is uuid5 under the event namespace, string for string (ids are stored and signed:
a redelivered message must derive the very same ones)."""

from __future__ import annotations

import random
import uuid

from schemas.events import _NAMESPACE, derive_id


def uuid5_id(*parts: str) -> str:
    """derive_id as it was first written."""
    return str(uuid.uuid5(_NAMESPACE, "\x1f".join(parts)))


def test_derive_id_is_uuid5_of_the_joined_parts() -> None:
    rng = random.Random(13)
    alphabet = "abcXYZ019-_.:/ \x1f\u00e9\u2603\U0001f600"
    cases = [(), ("",), ("inc-1", "escalation.decided"), ("a", "notification", "0", "law")]
    for _ in range(3000):
        cases.append(
            tuple(
                "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
                for _ in range(rng.randint(1, 6))
            )
        )
    for parts in cases:
        assert derive_id(*parts) == uuid5_id(*parts), parts


def test_a_known_id_stays_the_same() -> None:
    assert derive_id("inc-1", "escalation.decided") == uuid5_id("inc-1", "escalation.decided")
    assert uuid.UUID(derive_id("x")).version == 5

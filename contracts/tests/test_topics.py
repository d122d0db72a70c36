"""How services key what they publish (homeward.contracts.topics)."""

from __future__ import annotations

from homeward.contracts.events import ALL_PAYLOADS
from homeward.contracts.topics import KEYED_BY


def test_every_event_placements_publishes_names_the_commissioner_it_is_keyed_by() -> None:
    """Placements keys what it publishes by commissioner (KEYED_BY): each of its event types must
    carry one, or its events would fall back to another key and leave their placement's partition."""
    published = [p for p in ALL_PAYLOADS if "placements" in p.producers]
    assert len(published) >= 6
    for payload in published:
        assert KEYED_BY["placements"] in payload.model_fields, payload.__name__

"""Bad partner records for the campaign: hand-written (issue 14's poison cases and the other
kinds a careless or hostile partner sends) and generated with hypothesis from the seed. Each
must end dead-lettered by the ingress exactly once, with a reason; none may change anything.

A generated record is kept only if the contracts refuse it (``parse_kafka`` raises), so
"dead-lettered" is the only right outcome for it. The hand-written ones that parse (another
organisation's event, a reused id with other content) are refused by the ingress's
authorisation and inbox, which is what they test.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from typing import Any

from homeward.contracts import Event, parse_kafka, partner_source
from homeward.contracts.errors import ContractError
from homeward.contracts.events import PlacementMade


@dataclass
class BadRecord:
    label: str  # what kind of bad record it is, for the table
    topic_of: str  # the partner whose topic it is sent on
    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    generated: bool = False


def _refused(value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> bool:
    try:
        parse_kafka(value, headers or [])
    except ContractError:
        return True
    except Exception:  # anything else the parser raises is refused as malformed too
        return True
    return False


def _fix_nhs_check_digit(nhs: str) -> str:
    return nhs[:-1] + str((int(nhs[-1]) + 1) % 10)


def hand_written(template: Event[PlacementMade], sender: str, other: str, tag: str) -> list[BadRecord]:
    """Records that break each rule once, from a valid PlacementMade of ``sender``; ``other``
    is another partner. ``tag`` makes their ids unique to the run."""
    base = template.to_dict()

    def variant(label: str, **changes: Any) -> BadRecord:
        d = copy.deepcopy(base)
        d["id"] = f"chaos-{tag}-{label}"
        d["data"]["placement_id"] = f"PLC-CHAOS-{tag}-{label}"[:40]
        for path, value in changes.items():
            target = d
            *parents, last = path.split("__")
            for p in parents:
                target = target[p]
            target[last] = value
        return BadRecord(label, sender, json.dumps(d).encode(), key=f"chaos-{label}".encode())

    deep_data = variant("deep-data", data="DEEP")  # nested arrays as the data, 3,000 deep
    deep_data.value = (deep_data.value or b"").replace(b'"DEEP"', b"[" * 3000 + b"]" * 3000)
    wrong_org = variant("wrong-organisation", source=partner_source(other))
    nul_header = variant("nul-header", source=partner_source(other))
    nul_header.headers = [("x-trace", b"a\x00b"), ("bad\x00name", b"\x00")]
    records = [
        BadRecord("deep-nesting", sender, b"[" * 5000 + b"]" * 5000, key=b"chaos-deep"),
        deep_data,
        BadRecord("near-1mb-malformed", sender, b'{"specversion": "1.0", "junk": "' + b"x" * 1_000_000),
        variant("huge-extension", chaosjunk="x" * 900_000),
        variant("huge-value", data__placement_id="P" * 500_000),
        BadRecord("malformed-json", sender, b'{"specversion": "1.0", "id": ', key=b"chaos-malformed"),
        BadRecord("not-json", sender, b"\xff\xfe\x00binary", key=b"chaos-binary"),
        BadRecord("empty", sender, b"", key=b"chaos-empty"),
        BadRecord("tombstone", sender, None, key=b"chaos-tombstone"),
        variant("wrong-type-rate", data__daily_rate_pence="lots"),
        variant("wrong-type-start", data__start_date=20260101),
        variant("wrong-type-data", data=["not", "an", "object"]),
        variant("invalid-nhs-number", data__nhs_number=_fix_nhs_check_digit(base["data"]["nhs_number"])),
        variant("unknown-type", type="homeward.PlacementTeleported.v1"),
        variant("unknown-version", type=PlacementMade.event_type().rsplit(".v", 1)[0] + ".v9"),
        wrong_org,
        nul_header,
        variant("nul-in-id", id=f"chaos-{tag}-nul-\x00-id"),
        variant("nul-in-value", data__provider_site="8HA\x0003"),
        variant("date-9999-12-31", data__start_date="9999-12-31"),
        variant("date-0001-01-01", data__start_date="0001-01-01"),
        variant("time-9999-12-31", time="9999-12-31T23:59:59Z"),
        variant("negative-rate", data__daily_rate_pence=-1),
    ]
    return records


def conflicting_duplicate(sent: Event[Any], sender: str) -> BadRecord:
    """The id of an event the partner sent before, with other content."""
    d = sent.to_dict()
    key = next(k for k in ("daily_rate_pence", "amount_pence") if isinstance(d["data"].get(k), int))
    d["data"][key] += 1
    return BadRecord("duplicate-id-other-content", sender, json.dumps(d).encode(), key=b"chaos-dup")


# ---- generated ----------------------------------------------------------------------------
_FIELDS = (
    "id",
    "source",
    "type",
    "time",
    "specversion",
    "data",
    "data.placement_id",
    "data.nhs_number",
    "data.commissioner",
    "data.start_date",
    "data.daily_rate_pence",
    "data.bed_type",
    "data.funding",
)


def _mutate(template: dict[str, Any], path: str, value: Any, ident: str) -> bytes:
    d = copy.deepcopy(template)
    d["id"] = ident
    target = d
    *parents, last = path.split(".")
    for p in parents:
        target = target[p]
    target[last] = value
    return json.dumps(d).encode()


def generated(template: Event[PlacementMade], sender: str, count: int, seed: int, tag: str) -> list[BadRecord]:
    """``count`` records from hypothesis, reproducibly from ``seed``: arbitrary JSON as the
    whole message, arbitrary bytes, and a valid event with one field given an arbitrary JSON
    value. Only those the contracts refuse are kept."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    base = template.to_dict()
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=15,
    )
    strategy = st.one_of(
        json_values.map(lambda v: ("generated-json", json.dumps(v).encode())),
        st.binary(max_size=300).map(lambda b: ("generated-bytes", b)),
        st.tuples(st.sampled_from(_FIELDS), json_values, st.integers(0, 10**9)).map(
            lambda t: ("generated-field", _mutate(base, t[0], t[1], f"chaos-{tag}-gen-{t[2]}"))
        ),
    )
    found: list[BadRecord] = []
    seen: set[bytes] = set()

    @settings(
        max_examples=count * 3,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def collect(item: tuple[str, bytes]) -> None:
        label, value = item
        if len(found) < count and value not in seen and _refused(value):
            seen.add(value)
            found.append(BadRecord(label, sender, value, key=b"chaos-generated", generated=True))

    collect()
    return found


def interleave(rng: random.Random, chunks: list[list[Any]], bad: list[BadRecord]) -> list[list[Any]]:
    """Spread ``bad`` over the chunks, each at a random place."""
    out = [list(c) for c in chunks]
    for record in bad:
        i = rng.randrange(len(out))
        out[i].insert(rng.randrange(len(out[i]) + 1), record)
    return out

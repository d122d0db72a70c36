"""Valid example payloads for contract tests (NHS numbers from the 999 test range)."""

from __future__ import annotations

from typing import Any

from homeward.contracts.identifiers import nhs_numbers_in_test_range

VALID_NHS = nhs_numbers_in_test_range(1)[0]


def placement_made(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "placement_id": "PLC-QWU-000001",
        "nhs_number": VALID_NHS,
        "commissioner": "QWU",
        "provider": "8HA03",
        "provider_site": "8HA0301",
        "bed_type": "picu",
        "cohort": "mental_health",
        "age_band": "adult",
        "legal_status": "mha_s3",
        "programme": "mental_health",
        "start_date": "2026-01-05",
        "daily_rate_pence": 54500,
        "out_of_area_reason": "10",
    }
    data.update(overrides)
    return data


def envelope(data: dict[str, Any], type_: str = "homeward.PlacementMade.v1", **attrs: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-0001",
        "source": "urn:nhs:ods:QWU",
        "type": type_,
        "time": "2026-01-05T10:00:00Z",
        "subject": data.get("placement_id", "x"),
        "data": data,
    }
    env.update(attrs)
    return env

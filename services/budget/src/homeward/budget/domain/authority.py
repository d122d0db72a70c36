"""Who may move a commissioner's money, and who asserted each transfer (docs/authority.md).

Pure rules. A commissioner's budget is moved only by the commissioner itself or by the lead
commissioner it has delegated to (configured, never stated in an event). Every transfer records
the organisation whose statement caused it and the principal that organisation was verified
as: today ``User:<ODS>`` of the partner topic the ingress verified; services acting on their own
schedule are ``service:<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SERVICE_PRINCIPAL = "service:budget"


def may_act_for(organisation: str | None, commissioner: str, delegations: Mapping[str, str]) -> bool:
    """True when ``organisation`` is the commissioner or its configured delegated lead commissioner."""
    if organisation is None:
        return False
    return organisation == commissioner or delegations.get(commissioner) == organisation


def partner_principal(organisation: str) -> str:
    """The principal a partner organisation's events were verified as (its own partner topic)."""
    return f"User:{organisation}"


@dataclass(frozen=True)
class Assertion:
    """Who asserted what a transfer records: an organisation and the principal it was verified as."""

    organisation: str
    principal: str

    @classmethod
    def of_partner(cls, organisation: str) -> Assertion:
        return cls(organisation, partner_principal(organisation))

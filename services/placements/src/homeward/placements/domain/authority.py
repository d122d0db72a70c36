"""Who may speak for a placement, and as whom (docs/authority.md). Pure rules.

A provider may report that a placement started at its own site, but only the responsible
commissioner (or the lead commissioner it delegated to, by configuration) agrees to pay for it,
confirms an implausible rate, or agrees a placement someone else reported.
"""

from __future__ import annotations

from collections.abc import Mapping


def may_act_for(organisation: str | None, commissioner: str, delegations: Mapping[str, str]) -> bool:
    """True when ``organisation`` is the commissioner or its configured delegated lead commissioner."""
    if organisation is None:
        return False
    return organisation == commissioner or delegations.get(commissioner) == organisation


def partner_principal(organisation: str) -> str:
    """The principal a partner's events were verified as: today its own partner topic's organisation
    (the ingress checks that the topic and the event's source agree)."""
    return f"User:{organisation}"

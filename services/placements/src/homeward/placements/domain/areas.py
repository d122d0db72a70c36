"""Out of area: the provider site's commissioning area differs from the commissioner's.

Which area a site lies in is reference data, never code. A partner may state it on the
placement itself; otherwise the operator's reference file decides; otherwise what
providers stated about the site before (``BedAvailabilityUpdated.site_area`` or an
earlier ``PlacementMade.provider_site_area``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class SiteFact:
    """What a partner stated about a site: its provider and the commissioning area it lies in."""

    site: str
    provider: str
    area: str
    stated_at: dt.datetime
    stated_by: str
    event_id: str


def resolve_site_area(stated: str | None, configured: str | None, learned: str | None) -> str | None:
    """The site's area: the event's own statement, else the reference file, else a learned fact."""
    return stated or configured or learned


def is_out_of_area(commissioner_area: str, site_area: str) -> bool:
    return commissioner_area != site_area

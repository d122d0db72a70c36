"""Organisation reference data: which commissioning area each commissioner and each
provider site belongs to. It is data (a YAML file, and facts learned from events such as
``BedAvailabilityUpdated.site_area``), never code.

File format::

    commissioners:
      - {code: QWU, area: QWU, name: NHS Coventry and Warwickshire ICB}
    sites:
      - {code: RYG01, provider: RYG, area: QWU, name: Caludon Centre}
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class Site:
    code: str
    provider: str
    area: str
    name: str = ""


@dataclass
class Commissioner:
    code: str
    area: str
    name: str = ""


@dataclass
class ReferenceData:
    commissioners: dict[str, Commissioner] = field(default_factory=dict)
    sites: dict[str, Site] = field(default_factory=dict)

    def commissioner_area(self, code: str) -> str:
        """A commissioner's area; by default an ICB is its own area."""
        c = self.commissioners.get(code)
        return c.area if c else code

    def site_area(self, code: str) -> str | None:
        s = self.sites.get(code)
        return s.area if s else None

    def providers_in(self, area: str) -> frozenset[str]:
        """The providers with a site in ``area`` (indexed once: reference data is fixed at start)."""
        return self._providers_by_area.get(area, frozenset())

    @functools.cached_property
    def _providers_by_area(self) -> dict[str, frozenset[str]]:
        index: dict[str, set[str]] = {}
        for site in self.sites.values():
            index.setdefault(site.area, set()).add(site.provider)
        return {area: frozenset(providers) for area, providers in index.items()}


class ReferenceDataError(ValueError):
    pass


def load_reference(path: Path | str | None) -> ReferenceData:
    if path is None:
        return ReferenceData()
    p = Path(path)
    try:
        raw: dict[str, Any] = yaml.safe_load(p.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ReferenceDataError(f"cannot read reference data {p}: {exc}") from exc
    try:
        commissioners = {
            c["code"]: Commissioner(c["code"], c.get("area", c["code"]), c.get("name", ""))
            for c in raw.get("commissioners", [])
        }
        sites = {s["code"]: Site(s["code"], s["provider"], s["area"], s.get("name", "")) for s in raw.get("sites", [])}
    except (KeyError, TypeError) as exc:
        raise ReferenceDataError(f"{p}: every commissioner needs code; every site needs code, provider, area") from exc
    return ReferenceData(commissioners, sites)

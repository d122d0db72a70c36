from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # "up" | "down" | "starting" | "foreign"
    address: str
    pid: int | None = None
    detail: str = ""

    @property
    def up(self) -> bool:
        return self.state == "up"

"""Errors that say which field is wrong and why, without repeating the value."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


@dataclass
class ContractError(Exception):
    """An event that does not meet the contract. ``kind`` is a stable machine-readable reason."""

    kind: str
    message: str
    problems: list[FieldProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        if not self.problems:
            return f"{self.kind}: {self.message}"
        details = "; ".join(str(p) for p in self.problems)
        return f"{self.kind}: {self.message}: {details}"


def _clean(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def problems_from(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Turn pydantic's errors into field/problem pairs; the rejected input is never included."""
    out: list[FieldProblem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(part) for part in err["loc"])
        name = f"{prefix}.{loc}" if prefix and loc else (prefix or loc or "(event)")
        out.append(FieldProblem(name, _clean(err["msg"])))
    return out

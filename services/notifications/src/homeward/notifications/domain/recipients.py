"""Validating recipients and subscriptions as people type them (CLI) or list them (import file)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from email_validator import EmailNotValidError, validate_email
from homeward.contracts.vocab import Role

from .alerts import EVENT_NAMES

_ORG_RE = re.compile(r"^[A-Z0-9]{3,8}$")
_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off", ""}


class InvalidInput(ValueError):
    """One or more problems with one recipient; each names the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class RecipientSpec:
    email: str
    organisation: str
    role: Role
    display_name: str | None = None
    digest: bool = False
    subscribe_defaults: bool = True


def normalise_email(address: str, allowed_reserved: Collection[str] = ()) -> str:
    """A valid address, normalised; raises InvalidInput. No DNS lookup is made.

    ``allowed_reserved`` names reserved top-level domains to accept (``invalid`` and ``test``,
    RFC 2606/6761, can never reach a real mailbox, which makes them the safe choice for demos).
    """
    text = address.strip()
    local, at, domain = text.rpartition("@")
    tld = domain.rsplit(".", 1)[-1].lower()
    checked = text
    if at and "." in domain and tld in {t.lower() for t in allowed_reserved}:
        # email-validator refuses every reserved name but "test" (in test mode), so check the
        # rest of the address under "test" and keep the real top-level domain.
        checked = f"{local}@{domain[: -len(tld)]}test"
    try:
        result = validate_email(checked, check_deliverability=False, test_environment=checked != text)
    except EmailNotValidError as exc:
        raise InvalidInput([f"email: {exc}"]) from None
    # Addresses are compared without case: no NHS mail system treats case as meaningful.
    if checked == text:
        return result.normalized.lower()
    return f"{result.local_part}@{result.domain[: -len('test')]}{tld}".lower()


def parse_role(value: Any) -> Role:
    try:
        return Role(str(value).strip().lower().replace(" ", "_").replace("-", "_"))
    except ValueError:
        raise InvalidInput([f"role: must be one of {', '.join(r.value for r in Role)}"]) from None


def parse_organisation(value: Any) -> str:
    code = str(value or "").strip().upper()
    if not _ORG_RE.match(code):
        raise InvalidInput(["org: an organisation ODS code is 3 to 8 letters and digits"])
    return code


def parse_event_type(value: Any) -> str:
    name = str(value or "").strip()
    if name.startswith("homeward.") and name.count(".") == 2:
        name = name.split(".")[1]
    if name not in EVENT_NAMES:
        raise InvalidInput([f"event type: must be one of {', '.join(EVENT_NAMES)}"])
    return name


def parse_flag(value: Any, field: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return default if text == "" else False
    raise InvalidInput([f"{field}: must be true or false"])


def recipient_from(row: Mapping[str, Any], allowed_reserved: Collection[str] = ()) -> RecipientSpec:
    """A recipient from one import row or CLI call, with every problem found (not just the first)."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    fields = {
        "email": lambda: normalise_email(str(row.get("email") or ""), allowed_reserved),
        "organisation": lambda: parse_organisation(row.get("org", row.get("organisation"))),
        "role": lambda: parse_role(row.get("role")),
        "digest": lambda: parse_flag(row.get("digest"), "digest", False),
        "subscribe_defaults": lambda: parse_flag(row.get("defaults"), "defaults", True),
    }
    for key, parse in fields.items():
        try:
            values[key] = parse()
        except InvalidInput as exc:
            problems.extend(exc.problems)
    display_name = str(row.get("name") or row.get("display_name") or "").strip() or None
    if display_name is not None and len(display_name) > 200:
        problems.append("name: at most 200 characters")
    if problems:
        raise InvalidInput(problems)
    return RecipientSpec(display_name=display_name, **values)

"""Partners' API keys: what a key looks like, and how it is stored and checked.

A key is ``hwk_<key id>_<secret>``: the key id (12 hex digits) is not secret and is how the
key is found; the secret is 32 random bytes (URL-safe base64). Only the sha256 of the whole
key is stored. A key that random cannot be guessed, so a slow password hash would add
nothing; the stored digest is compared in constant time all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from homeward.contracts.topics import partner_of, partner_topic

PREFIX = "hwk"
_KEY_RE = re.compile(r"^hwk_(?P<key_id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    key: str  # shown to the operator once, never stored

    @property
    def digest(self) -> str:
        return key_digest(self.key)


def new_key() -> NewKey:
    key_id = secrets.token_hex(6)
    return NewKey(key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}")


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_id_of(presented: str) -> str | None:
    """The key id of a well-formed key, or None for anything else."""
    m = _KEY_RE.match(presented)
    return m.group("key_id") if m else None


def matches(presented: str, stored_digest: str) -> bool:
    return hmac.compare_digest(key_digest(presented).encode(), stored_digest.encode())


def ods_code(raw: str) -> str:
    """An ODS code as keys and topics use it (uppercase); ValueError if it is not one."""
    code = raw.strip().upper()
    if partner_of(partner_topic(code)) != code:
        raise ValueError(f"{raw!r} is not an ODS code (3 to 9 letters and digits)")
    return code

"""Pseudonymous patient references: a keyed hash (HMAC-SHA-256) of the NHS number.

The same NHS number and key always give the same reference, so services can link a
person's placements without holding the NHS number; without the key it cannot be
reversed or checked against a list of numbers.

Residual risk: the reference is only as safe as the key's secrecy. There are fewer than
10^10 NHS numbers (about 9 x 10^8 with a valid check digit), so anyone who has the key can
compute every reference in about an hour on one core and read the NHS number behind each.
Keep the key in a secret store, never in a file in the repository; rotate it
(``HOMEWARD_PATIENT_REF_KEY_PREVIOUS``, docs/operations.md) if it may have leaked.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


def patient_ref(nhs_number: str, key: str | bytes) -> str:
    digits = nhs_number.replace(" ", "")
    key_bytes = key.encode() if isinstance(key, str) else key
    return "pt_" + hmac.new(key_bytes, digits.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Pseudonymiser:
    """The current key, and during a rotation the key it replaces.

    New references are always made with the current key (:meth:`ref`); a look-up of a
    person tries every reference they may have been stored under (:meth:`refs`), so records
    made before the rotation are found until they have been re-keyed.
    """

    key: str
    previous: str | None = None

    def ref(self, nhs_number: str) -> str:
        return patient_ref(nhs_number, self.key)

    def previous_ref(self, nhs_number: str) -> str | None:
        return patient_ref(nhs_number, self.previous) if self.previous else None

    def refs(self, nhs_number: str) -> list[str]:
        old = self.previous_ref(nhs_number)
        current = self.ref(nhs_number)
        return [current] if old is None or old == current else [current, old]

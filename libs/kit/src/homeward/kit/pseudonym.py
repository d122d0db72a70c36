"""Pseudonymous patient references: a keyed hash (HMAC-SHA-256) of the NHS number.

The same NHS number and key always give the same reference, so services can link a
person's placements without holding the NHS number; without the key it cannot be
reversed or checked against a list of numbers.
"""

from __future__ import annotations

import hashlib
import hmac


def patient_ref(nhs_number: str, key: str | bytes) -> str:
    digits = nhs_number.replace(" ", "")
    key_bytes = key.encode() if isinstance(key, str) else key
    return "pt_" + hmac.new(key_bytes, digits.encode(), hashlib.sha256).hexdigest()[:32]

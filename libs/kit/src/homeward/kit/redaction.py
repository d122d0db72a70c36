"""NHS numbers never leave in text meant for people or logs: anything shaped like one (ten
digits, optionally grouped 3-3-4) is replaced wherever it appears, whether or not its check digit
is valid: a near-miss is still personal data.

Pure (no logging set-up, no I/O), so a domain may redact the text it writes; the kit's logging
applies the same rule to every log line."""

from __future__ import annotations

import re

NHS_NUMBER_LIKE = re.compile(r"(?<!\d)\d{3}[ -]?\d{3}[ -]?\d{4}(?!\d)")
REDACTED = "[REDACTED-NHS-NUMBER]"


def redact_text(text: str) -> str:
    return NHS_NUMBER_LIKE.sub(REDACTED, text)

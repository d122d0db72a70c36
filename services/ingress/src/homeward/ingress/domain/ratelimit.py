"""A token bucket per partner, in memory (so per replica: with N replicas a partner may send
N times the rate; docs/partner-guide.md says so)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """``rate_per_s`` tokens a second per key, at most ``burst`` saved up; a request takes one."""

    def __init__(self, rate_per_s: float, burst: int, now: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._now = now
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take a token for ``key``: 0.0 if there was one, else how many seconds until there is."""
        now = self._now()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

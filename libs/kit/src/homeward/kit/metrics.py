"""Prometheus metrics shared by every service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_HANDLED = Counter("homeward_events_handled_total", "Events consumed, by outcome", ["service", "type", "outcome"])
DEAD_LETTERS = Counter("homeward_dead_letters_total", "Messages sent to the dead-letter topic", ["service", "reason"])
BATCH_SECONDS = Histogram("homeward_consumer_batch_seconds", "Time to handle one consumed batch", ["service"])
BATCH_RETRIES = Counter(
    "homeward_consumer_batch_retries_total",
    "Consumed batches rolled back and run again: 'careful' after a handler raised (savepoint per event), "
    "'transient' after a deadlock or similar, 'rewound' when transient errors outlasted the budget",
    ["service", "why"],
)
OUTBOX_PUBLISHED = Counter("homeward_outbox_published_total", "Outbox rows published to Kafka", ["service"])
OUTBOX_PENDING = Gauge("homeward_outbox_pending", "Outbox rows waiting to be published", ["service"])
SCHEDULER_RUNS = Counter("homeward_scheduler_runs_total", "Scheduled job runs", ["service", "job", "outcome"])

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
OUTBOX_PARKED = Counter(
    "homeward_outbox_parked_total", "Outbox rows Kafka refused for their own sake, set aside (parked)", ["service"]
)
OUTBOX_PARKED_ROWS = Gauge("homeward_outbox_parked_rows", "Parked outbox rows, waiting for a person", ["service"])
OUTBOX_BATCH_SECONDS = Histogram(
    "homeward_outbox_batch_seconds",
    "Time from handing a relay batch to the producer to Kafka's acknowledgement of all of it",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RETENTION_DELETED = Counter(
    "homeward_retention_deleted_total", "Rows deleted by the retention job, by table", ["service", "table"]
)
STALLED = Gauge(
    "homeward_stalled",
    "1 while work waits and nothing has been committed for stall_after_s (a consumer's batch rolled back "
    "again and again, or the leading outbox relay not publishing its pending rows); /readyz then answers 503",
    ["service", "what"],
)
SECONDS_SINCE_PROGRESS = Gauge(
    "homeward_seconds_since_progress",
    "How long work has waited without progress (a consumer's batch not committed, the leading relay's pending "
    "rows not published); 0 when nothing waits",
    ["service", "what"],
)

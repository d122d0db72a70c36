"""Homeward ingress: the front door for partner events.

It is the only consumer of the partner topics (``partner.<ODS>.events``). Each record is
parsed, validated against the contracts, checked against the organisation that owns the
topic, and de-duplicated on (source, id) once, here; a bad record is dead-lettered once,
with its reason, on ``homeward.dlq.ingress``. Accepted events are republished unchanged in
meaning (the partner's CloudEvents ``source``, ``id``, ``time`` and payload) on
``homeward.ingress.v1``, keyed by the entity they are about, which referrals, placements and
budget read instead of the partner topics.

Partners that cannot run a Kafka client use the ingress's HTTP front door instead
(``POST /events``, :mod:`homeward.ingress.entrypoints.http`): the CloudEvents HTTP binding in
its structured, binary and batch modes, with an API key per ODS code. It checks each event as
the Kafka path does, answers at once (RFC 9457 problems for refusals), and puts what it
accepts on the partner's own topic, where the ingress reads it like any other record.
"""

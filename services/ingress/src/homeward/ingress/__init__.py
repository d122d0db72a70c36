"""Homeward ingress: the front door for partner events.

It is the only consumer of the partner topics (``partner.<ODS>.events``). Each record is
parsed, validated against the contracts, checked against the organisation that owns the
topic, and de-duplicated on (source, id) once, here; a bad record is dead-lettered once,
with its reason, on ``homeward.dlq.ingress``. Accepted events are republished unchanged in
meaning (the partner's CloudEvents ``source``, ``id``, ``time`` and payload) on
``homeward.ingress.v1``, keyed by the entity they are about, which referrals, placements and
budget read instead of the partner topics.
"""

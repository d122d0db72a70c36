-- Budget parks in the kit's parking lot (kit migration 0006, homeward.kit.parking) like every
-- service: an entry keeps the whole event, what it waits for, why, and an expiry, and ops see
-- it in `GET /admin/parked` and `homeward parked`. The old table kept the whole event too (the
-- CloudEvents JSON), so each of its rows is carried over: source and time are read from the
-- event itself; it waits for its placement (`placement:<id>`, handlers.awaiting_placement);
-- the topic it came from was not kept (NULL: a dead letter names the budget's parking lot);
-- its expiry is the kit's default of 30 days from when it was parked (the old table had none),
-- so one parked that long ago is dead-lettered by the next parking-expiry run, as it would be
-- had it been parked in the lot. An event already in the lot (same source and id) is kept.
INSERT INTO parking_lot (event_id, source, awaiting, event_type, event_time, origin, reason,
                         parked_at, expires_at, status, event)
SELECT p.event_id,
       (p.event::jsonb) ->> 'source',
       'placement:' || p.placement_id,
       p.event_type,
       ((p.event::jsonb) ->> 'time')::timestamptz,
       NULL,
       'placement-unknown',
       p.parked_at,
       p.parked_at + interval '30 days',
       'parked',
       p.event
FROM parked_events p
ORDER BY p.id
ON CONFLICT (source, event_id) DO NOTHING;

DROP TABLE parked_events;

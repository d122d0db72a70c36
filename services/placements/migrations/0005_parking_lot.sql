-- Events about placements not yet known now wait in the kit's parking lot (kit migration 0006,
-- homeward.kit.parking), like every service's. parked_events kept each whole event, so every row
-- is carried over, awaiting 'placement:<id>' as the handlers now name it:
--   * parked or expired rows stay parked: the old 'expired' only marked them, and they were still
--     applied when their placement came. Their expiry is 30 days after they were parked (the old
--     and the kit's default), so one already past it is dead-lettered (parked-expired) by the
--     kit's parking-expiry job on its next run, where ops can see and replay it;
--   * applied and rejected rows keep their status, resolution and time, for the record.
-- The topic each came from was not kept; the kit names the lot instead when it dead-letters one.
INSERT INTO parking_lot (event_id, source, awaiting, event_type, event_time, origin, reason, parked_at,
                         expires_at, status, resolved_at, resolution, event)
SELECT event_id,
       event->>'source',
       'placement:' || placement_id,
       event_type,
       event_time,
       NULL,
       reason,
       parked_at,
       parked_at + interval '30 days',
       CASE WHEN status IN ('parked', 'expired') THEN 'parked' ELSE status END,
       CASE WHEN status IN ('parked', 'expired') THEN NULL ELSE resolved_at END,
       CASE WHEN status IN ('parked', 'expired') THEN NULL ELSE resolution END,
       event::text
FROM parked_events
ORDER BY id
ON CONFLICT (source, event_id) DO NOTHING;

DROP TABLE parked_events;

-- CloudEvents ids are unique per source, not globally: two partners may both send id "1".
-- The digest of what was handled tells a redelivery (same content: skipped) from a partner
-- reusing an id for a different event (dead-lettered as conflicting-duplicate).
ALTER TABLE inbox ADD COLUMN digest text;
ALTER TABLE inbox DROP CONSTRAINT inbox_pkey;
ALTER TABLE inbox ADD PRIMARY KEY (consumer, source, event_id);

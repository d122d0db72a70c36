-- A row Kafka refuses for its own sake (too large, an invalid topic name...) is parked: set
-- aside with the reason in last_error, so it no longer holds up the rows after it. Parked
-- rows are neither pending nor published, and retention never deletes them.
ALTER TABLE outbox ADD COLUMN parked_at timestamptz;

DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;

-- Retention deletes published outbox rows and inbox rows by age, oldest first, in bounded
-- batches; these indexes find them without scanning the tables.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX inbox_received_at ON inbox (received_at);

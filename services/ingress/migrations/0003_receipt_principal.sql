-- Who posted an event over HTTP: the id of the API key it came with (not a secret). The ingress
-- names it as the event's principal when it forwards the event (docs/authority.md).
ALTER TABLE http_receipts ADD COLUMN key_id text;

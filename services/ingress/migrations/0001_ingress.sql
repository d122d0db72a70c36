-- The ingress keeps no state of its own beyond the kit's inbox (de-duplication on
-- (source, id)) and outbox (accepted events on their way to homeward.ingress.v1). This
-- migration records the service's schema version so that later ones have a base.
COMMENT ON TABLE inbox IS 'ingress: every partner event accepted once, by (source, event id)';

-- Authority (docs/authority.md): a placement is charged to a commissioner only once that
-- commissioner (or its delegated lead) has agreed it, and a rate outside its bed type's
-- plausibility bounds is held until the commissioner confirms it.

-- Who reported the placement, who agreed it, and whether PlacementRegistered has gone to the
-- budget. Placements registered before this migration were published when they arrived: they
-- stay charged, as agreed by their commissioner.
ALTER TABLE placements
    ADD COLUMN reported_by      text,
    ADD COLUMN agreed_by        text,
    ADD COLUMN agreed_event_id  text,
    ADD COLUMN released         boolean NOT NULL DEFAULT true;
UPDATE placements SET agreed_by = commissioner, agreed_event_id = registered_event_id;
ALTER TABLE placements ALTER COLUMN released SET DEFAULT false;
CREATE INDEX placements_awaiting_agreement ON placements (commissioner) WHERE agreed_by IS NULL;

-- A held statement is kept in the history but is not in force until confirmed.
ALTER TABLE placement_rates
    ADD COLUMN held          boolean NOT NULL DEFAULT false,
    ADD COLUMN asserted_by   text,
    ADD COLUMN confirmed_by  text;

-- A repatriation between placements not both agreed is recorded but published (to the budget and
-- to staff) only once both are.
ALTER TABLE repatriations ADD COLUMN published boolean NOT NULL DEFAULT true;
ALTER TABLE repatriations ALTER COLUMN published SET DEFAULT false;

-- Authority (docs/authority.md). Every transfer records who asserted it: the organisation whose
-- statement caused it and the principal that organisation was verified as, next to its cause
-- (the event id). Transfers posted before this migration have neither; every transfer posted
-- after it must have both (NOT VALID: the check applies to new rows, the old stay as they were).
ALTER TABLE transfers ADD COLUMN asserted_by text, ADD COLUMN principal text;
ALTER TABLE transfers ADD CONSTRAINT transfers_asserted
    CHECK (asserted_by IS NOT NULL AND principal IS NOT NULL) NOT VALID;

-- An invoice whose amount per night is outside its bed type's plausibility bounds is held, and
-- matched only once the commissioner confirms it.
ALTER TABLE invoices DROP CONSTRAINT invoices_status_check;
ALTER TABLE invoices ADD CONSTRAINT invoices_status_check
    CHECK (status IN ('matched', 'parked', 'refused', 'held'));
ALTER TABLE invoices ADD COLUMN confirmed_by text;

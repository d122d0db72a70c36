-- Commissioners and years whose forecast has moved since their thresholds were last checked.
-- Handlers mark them as they post; the thresholds job checks and clears them, so an alert
-- depends on the ledger as it stands, not on the order a replica read a commissioner's topics.
CREATE TABLE thresholds_moved (
    commissioner    text        NOT NULL,
    financial_year  text        NOT NULL,
    moved_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (commissioner, financial_year)
);

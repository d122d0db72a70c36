-- A repatriation's rates follow a rate change stated after the move that took effect on or
-- before it (issue 14): the row keeps the rates now in force, and how many times they were
-- corrected; each correction is published as RepatriationCorrected.
ALTER TABLE repatriations ADD COLUMN corrections int NOT NULL DEFAULT 0;

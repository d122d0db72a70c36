-- NHS numbers are kept encrypted by the service (AES-256-GCM with HOMEWARD_NHS_NUMBER_KEY,
-- homeward.kit.crypto), never in plain text; a person is found by the keyed patient reference.
-- The service seals any plain value left from before this migration when it starts (and
-- re-seals values of a previous key, and re-keys references made with a previous patient
-- reference key): see homeward.placements.adapters.patients. The plain column stays, empty,
-- until every installation has started once with this version; a later migration drops it.
ALTER TABLE patients ALTER COLUMN nhs_number DROP NOT NULL;
ALTER TABLE patients ADD COLUMN nhs_number_sealed bytea;
-- Which patient reference key made patient_ref (homeward.kit.crypto.key_id; NULL before 0002).
ALTER TABLE patients ADD COLUMN ref_key_id text;
-- During a rotation: the reference the person had under the previous key, so a reference
-- still held elsewhere (another service's records, an email) is found.
ALTER TABLE patients ADD COLUMN previous_patient_ref text;
ALTER TABLE patients ADD CONSTRAINT patients_nhs_number_kept
    CHECK (nhs_number IS NOT NULL OR nhs_number_sealed IS NOT NULL);
CREATE INDEX patients_previous_ref ON patients (previous_patient_ref) WHERE previous_patient_ref IS NOT NULL;

-- Re-keying a person changes patient_ref: their placements follow.
ALTER TABLE placements DROP CONSTRAINT placements_patient_ref_fkey;
ALTER TABLE placements ADD CONSTRAINT placements_patient_ref_fkey
    FOREIGN KEY (patient_ref) REFERENCES patients (patient_ref) ON UPDATE CASCADE;

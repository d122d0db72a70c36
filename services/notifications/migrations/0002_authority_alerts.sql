-- Authority alerts (docs/authority.md): a placement reported by someone other than its
-- commissioner waits for the commissioner's agreement; an implausible rate or invoice is held
-- for confirmation. Existing recipients subscribe with `homeward-notifications subscribe`.
INSERT INTO default_routes (event_type, role, min_escalation_level, max_escalation_level) VALUES
    ('PlacementAwaitingAgreement', 'oap_lead',     1, NULL),
    ('PlacementAwaitingAgreement', 'finance_lead', 1, NULL),
    ('AmountHeld',                 'finance_lead', 1, NULL)
ON CONFLICT (event_type, role) DO NOTHING;

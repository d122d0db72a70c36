"""The budget's pure domain: money, calendar, ledger rules, streams, positions. No I/O here."""

"""Homeward budget: the double-entry ledger of delegated commissioning spend."""

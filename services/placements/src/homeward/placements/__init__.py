"""Homeward placements: the placement register, review schedules, ReviewOverdue and PatientRepatriated."""

"""Homeward referrals: referral intake, local capacity matching and unmet need."""

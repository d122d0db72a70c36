"""The referrals domain: pure rules and models, no I/O."""

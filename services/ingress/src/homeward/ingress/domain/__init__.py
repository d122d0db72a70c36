"""The ingress's pure rules: the CloudEvents HTTP binding, API keys, rate limits (no I/O)."""

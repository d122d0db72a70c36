"""The ingress's PostgreSQL adapters: partners' API keys and HTTP receipts."""

"""The embedded Matomo-compatible receiver (imports only core)."""

"""Blocking work against a real Matomo (standard library HTTP): tracker poster, Reporting API client, backfill, verify, preflight."""

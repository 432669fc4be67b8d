"""Blocking work against a real Matomo, standard library only (no Locust, gevent or Flask).

``tracker_http`` (the one HTTP stack: tracker poster, single requests), ``reporting_api`` (the
Reporting API client), ``rate_limit`` (token bucket), ``checkpoint`` (the backfill's resume file),
``backfill``, ``verify`` and ``preflight``.
"""

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3 or requests)

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3 or requests)

from test_webui import config_path, ui  # noqa: F401  (the web tests' fixtures, for every module here)

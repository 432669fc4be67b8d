"""Locustfile for trafficinator-locust: one user class per target of the traffic config.

    locust -f locustfiles/trafficinator.py --traffic-config config/demo.yaml

The generated classes are put into this module's globals under their own names, which is how Locust
finds them (and dispatches them by name on workers).
"""

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

from trafficinator_locust.plugin import load_plugin

plugin = load_plugin()
if plugin is not None:
    globals().update(plugin.user_classes)

"""The plugin's locustfile: ``locust -f locustfiles/trafficinator.py --traffic-config FILE``.

Thin on purpose: the real one ships inside the package (``trafficinator_locust/locustfile.py``) so an
installed package can run without this repository.
"""

import locust  # noqa: F401  (first: gevent monkey-patching before anything imports urllib3)

from trafficinator_locust.locustfile import *  # noqa: F401,F403  (the generated Target_* classes)

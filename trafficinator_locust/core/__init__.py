"""Pure: config, traffic model, planning, encoding, Matomo rules, arithmetic. No Locust, gevent, Flask or sockets."""

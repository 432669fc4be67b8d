"""Locust and gevent glue: users, permit broker, shape, bulk sender, tally, run summary, config shipping."""

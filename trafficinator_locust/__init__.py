"""trafficinator-locust: realistic Matomo traffic for many Matomo instances from one Locust test."""

__version__ = "0.1.0"

"""The web control plane on Locust's Flask app."""

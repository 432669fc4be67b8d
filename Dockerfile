# The plugin on top of the official Locust image (entrypoint: locust); the traffic config is mounted at /config.
FROM locustio/locust:2.47.0
USER root
COPY pyproject.toml README.md /opt/trafficinator/
COPY trafficinator_locust /opt/trafficinator/trafficinator_locust
COPY locustfiles /opt/trafficinator/locustfiles
RUN pip install --no-cache-dir /opt/trafficinator
USER locust
WORKDIR /opt/trafficinator

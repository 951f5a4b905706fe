# mqtt-collector container image.
#
#   docker build -t mqtt-collector .
#   docker build --build-arg EXTRAS=uvloop -t mqtt-collector .     # with optional extras
#   docker run -d --name mqtt-collector --stop-timeout 45 \
#     -v /etc/mqtt-collector:/etc/mqtt-collector:ro \
#     -v mqtt-collector-state:/var/lib/mqtt-collector \
#     mqtt-collector
#
# Both stages use the same base: the virtualenv copied from the builder points at its Python.
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependency layer: the project metadata and an empty stand-in for the package, installed and then
# uninstalled, leaving only the dependencies. It is rebuilt only when pyproject.toml (or README.md,
# which the metadata includes) changes, not when the code does.
ARG EXTRAS=""
COPY pyproject.toml README.md LICENSE ./
RUN mkdir mqtt_collector \
    && touch mqtt_collector/__init__.py \
    && pip install ".${EXTRAS:+[$EXTRAS]}" \
    && pip uninstall --yes mqtt-collector \
    && rm -r mqtt_collector

# App layer: the package itself, its dependencies already in place. pip compiles the bytecode
# here, because at run time /opt/venv is not writable.
COPY mqtt_collector ./mqtt_collector
RUN pip install --no-deps .


FROM ${PYTHON_IMAGE}

# A fixed, unprivileged UID/GID, so files in mounted volumes have a predictable owner.
RUN groupadd --gid 10001 mqtt-collector \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/mqtt-collector \
        --shell /usr/sbin/nologin mqtt-collector \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/mqtt-collector \
    && install -d -m 0755 /etc/mqtt-collector

COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
# Collectors' files go here (e.g. options: {path: /var/lib/mqtt-collector/messages.db});
# mount a volume on it to keep them.
WORKDIR /var/lib/mqtt-collector

# Prometheus /metrics, /healthz and /readyz, when the config sets metrics.listen (use
# 0.0.0.0:9108 to be scraped from outside the container).
EXPOSE 9108

# `mqtt-collector health` exits 0 while the daemon is up (its event loop rewrites a status file
# in /tmp every second) and connected to the broker, 1 otherwise; metrics.listen need not be set.
# Run with another config path? Override it: --health-cmd "mqtt-collector health --config FILE".
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mqtt-collector", "health", "--config", "/etc/mqtt-collector/config.yaml"]

# SIGTERM starts the stop: stop reading, finish queued work for up to queue.drain_timeout, ack
# it, exit the lifecycles, disconnect; all within drain_timeout + 10 s. Docker kills after 10 s
# by default and no Dockerfile instruction changes that: run with --stop-timeout 45 (compose:
# stop_grace_period: 45s), i.e. drain_timeout + 15, raised along with drain_timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mqtt-collector"]
CMD ["run", "--config", "/etc/mqtt-collector/config.yaml"]

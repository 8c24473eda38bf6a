# Worker image: one image for every pool, running the same `dts` package as the host that built it. The
# container engines build it from a context they assemble (dts.engines.image: this file, requirements.txt,
# the package's files under dts/), tagged per project with the package's version and a hash of that context;
# `docker build .` in this repository works too. The pool comes from DTS_POOL (set per service by the engine);
# its queues and options from the project's test-config.yml, mounted at /app, through `python -m dts worker`.
# Logs are JSON lines (LOG_FORMAT=json, docs/operations/monitoring.md); `-e LOG_FORMAT=text` for Celery's text.
# BASE_IMAGE lets a machine without a registry supply a local base (see docker/base_image.sh);
# it must provide python3 with the venv module.
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/dts \
    HOME=/tmp \
    DTS_CONFIG=/app/test-config.yml \
    LOG_FORMAT=json

WORKDIR /app
COPY requirements.txt ./
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install -r requirements.txt
COPY dts/ /opt/dts/dts/

# An unprivileged user (no home, no shell needed); the worker needs no writable path but /tmp.
USER 10001:10001

# Healthy when this container's own worker (node $DTS_POOL@<hostname>) answers ping. Each check starts a
# Python process (about a CPU-second), hence the 60 s interval.
HEALTHCHECK --interval=60s --timeout=20s --start-period=30s --retries=3 \
    CMD ["python", "-m", "dts", "worker", "--ping"]

# exec form, and `dts worker` execs celery: celery is PID 1 and receives SIGTERM (warm shutdown) from `docker stop`.
CMD ["python", "-m", "dts", "worker"]

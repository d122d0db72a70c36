# syntax=docker/dockerfile:1
# One image for all five Homeward services (and the init step and the partner CLI).
# Which service runs is chosen at start, not at build time:
#   docker build -t homeward .
#   docker run -e HOMEWARD_SERVICE=placements homeward      (or: docker run homeward placements)
# See docs/operations.md ("Running in containers") and deploy/docker/entrypoint.sh.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: resolve the locked dependencies into a self-contained virtualenv ----------
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

RUN python -m pip install "uv==${UV_VERSION}"

WORKDIR /src

# Third-party dependencies first, from the lock file alone, so that this layer is reused
# while only Homeward's own code changes.
COPY pyproject.toml uv.lock ./
COPY contracts/pyproject.toml contracts/
COPY libs/kit/pyproject.toml libs/kit/
COPY libs/testing/pyproject.toml libs/testing/
COPY tools/devstack/pyproject.toml tools/devstack/
COPY services/ingress/pyproject.toml services/ingress/
COPY services/referrals/pyproject.toml services/referrals/
COPY services/placements/pyproject.toml services/placements/
COPY services/budget/pyproject.toml services/budget/
COPY services/notifications/pyproject.toml services/notifications/
RUN uv sync --frozen --no-dev --package homeward --no-editable --no-install-workspace

# Then the workspace packages themselves, installed as wheels (not editable), so the
# final image needs the virtualenv and nothing from /src. --package homeward is the root package
# (the homeward CLI), which depends on every service and brings the kit's admin extra
# (confluent-kafka): the init step sets Kafka credentials and ACLs with it (homeward.kit.access),
# as `homeward partner` does. It leaves out the test support (homeward-testing, pytest).
COPY . .
RUN uv sync --frozen --no-dev --package homeward --no-editable \
 && /app/.venv/bin/python -c "import homeward.contracts, homeward.kit, homeward.ingress, homeward.referrals, homeward.placements, homeward.budget, homeward.notifications" \
 && /app/.venv/bin/python -c "import confluent_kafka, homeward.kit.access, homeward.cli.main"

# ---- runtime: Python, the virtualenv and two small scripts; no compiler, no uv, no pip ---
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="homeward" \
      org.opencontainers.image.description="Homeward services: ingress, referrals, placements, budget, notifications"

RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
 && groupadd --system --gid 10001 homeward \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin homeward

COPY --from=builder /app/.venv /app/.venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /app/bin/entrypoint.sh
COPY --chmod=0644 deploy/docker/healthcheck.py /app/bin/healthcheck.py
COPY --chmod=0644 deploy/init/init_topics.py /app/deploy/init/init_topics.py

# Services listen on every interface inside the container (their default is loopback).
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOMEWARD_INGRESS_HTTP_HOST=0.0.0.0 \
    HOMEWARD_REFERRALS_HTTP_HOST=0.0.0.0 \
    HOMEWARD_PLACEMENTS_HTTP_HOST=0.0.0.0 \
    HOMEWARD_BUDGET_HTTP_HOST=0.0.0.0 \
    HOMEWARD_NOTIFICATIONS_HTTP_HOST=0.0.0.0

WORKDIR /app
USER 10001:10001

# referrals 8001, placements 8002, budget 8003, notifications 8004, ingress 8005
EXPOSE 8001 8002 8003 8004 8005

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "/app/bin/healthcheck.py", "/healthz"]

ENTRYPOINT ["/app/bin/entrypoint.sh"]

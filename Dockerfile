# One image recipe for the four services: `python -m <module>`, non-root, from the locked
# dependencies. The build arguments pick the service; docker-compose.yml passes them:
#   docker build --build-arg SERVICE=order-service --build-arg SERVICE_MODULE=order_service \
#     --build-arg SERVICE_PORT=8082 -t otel-order-stack/order-service .
# The build context is the repository root (pyproject.toml, uv.lock and servicekit/ live there).

ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: a virtualenv in /opt/venv with the locked dependencies and this one service
FROM ${PYTHON_IMAGE} AS builder

ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never
WORKDIR /src

# 1. Third-party dependencies only, exactly as locked. --locked (not --frozen): the build fails
#    if uv.lock is out of date with pyproject.toml instead of installing stale pins. This layer
#    is rebuilt only when pyproject.toml or uv.lock change, not on every code edit, and it is
#    the same for the four services.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project

# 2. The project as a regular (non-editable) wheel holding servicekit and this service only:
#    hatch builds the packages listed in pyproject.toml that are present, and only these two
#    are copied in. Installing it, rather than pointing PYTHONPATH at the sources, gives
#    importlib.metadata the project's version, which is the spans' service.version.
#    Built without uv's cache (--no-cache, no cache mount): uv keys a local project's built
#    wheel on its pyproject.toml, the same file in the four builds, so a shared cache hands the
#    first service's wheel to the other three, whose images then hold the wrong package. Only
#    the project is built here (the dependencies are in the layer above), so nothing is lost.
ARG SERVICE
ARG SERVICE_MODULE
COPY README.md ./
COPY servicekit ./servicekit
COPY ${SERVICE}/${SERVICE_MODULE} ./${SERVICE}/${SERVICE_MODULE}
RUN uv sync --locked --no-dev --no-editable --no-cache

# ---------------------------------------------------------------------------------------------
# runtime: the same slim Python, the venv, no uv, no pip cache, no sources, no build tools
FROM ${PYTHON_IMAGE} AS runtime

ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" app \
    && useradd --system --uid "${APP_UID}" --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && mkdir -p /data \
    && chown app:app /data

COPY --from=builder /opt/venv /opt/venv

# The service's own port variable (GATEWAY_PORT, ...) has its default in the code and is set by
# compose; DATA_DIR=/data holds the SQLite files (an empty named volume there takes its owner).
ARG SERVICE
ARG SERVICE_MODULE
ARG SERVICE_PORT
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    DATA_DIR=/data \
    OTEL_SERVICE_NAME=${SERVICE} \
    SERVICE_MODULE=${SERVICE_MODULE}

WORKDIR /app
USER app:app
EXPOSE ${SERVICE_PORT}

# `exec` replaces the shell: python is PID 1 and gets SIGTERM itself, so uvicorn shuts down
# gracefully and the tracer provider flushes the spans still queued (servicekit.app).
CMD ["sh", "-c", "exec python -m \"$SERVICE_MODULE\""]

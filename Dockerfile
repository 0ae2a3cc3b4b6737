# syntax=docker/dockerfile:1
#
# One image for all five services. The default command starts registration;
# docker-compose.yml overrides `command` with `python -m services.<name>`.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app

# Dependencies first: this layer is only rebuilt when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project \
    && rm -rf /root/.cache/uv

# Application code.
COPY shared ./shared
COPY services ./services

# Unprivileged runtime user; var/ is the only place the services write to
# (e.g. the jsonl telemetry file when OTEL_TRACES_EXPORTER=jsonl).
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /app/var \
    && chown app:app /app/var

ENV PATH=/app/.venv/bin:$PATH \
    SERVICE_HOST=0.0.0.0

USER app

EXPOSE 8000 8001 8002 8003 8004 8005

CMD ["python", "-m", "services.registration"]

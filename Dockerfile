# Commonroom image: daphne serving commonroom.asgi on port 8000, started through commonroom.serve
# (which sets daphne's WebSocket limits and keep-alive).
#
# Migrations are not run at start-up. `docker compose up` runs them through the
# one-shot `migrate` service; to run them by hand:
#   docker compose run --rm migrate
# docker-compose.yml runs two of these behind nginx (deploy/nginx/), adding --proxy-headers.

FROM python:3.11-slim AS builder
ENV PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY pyproject.toml README.md manage.py ./
COPY commonroom/ commonroom/
COPY audit/ audit/
COPY classes/ classes/
COPY messaging/ messaging/
COPY moderation/ moderation/
COPY frontend/ frontend/
# Runtime dependencies only (no [dev]); drop pip's in-tree build leftovers.
RUN pip install --no-cache-dir /app && rm -rf /app/build /app/*.egg-info
# Settings need a SECRET_KEY and a database URL to load; neither is used by collectstatic.
ENV STATIC_ROOT=/app/staticfiles
RUN SECRET_KEY=build-only-not-secret \
    DJANGO_SETTINGS_MODULE=commonroom.settings \
    DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=commonroom.settings \
    COMMONROOM_DATA_DIR=/app/data \
    STATIC_ROOT=/app/staticfiles
RUN groupadd --gid 10001 commonroom \
    && useradd --uid 10001 --gid commonroom --no-create-home --home-dir /app --shell /usr/sbin/nologin commonroom
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app
RUN mkdir -p /app/data && chown commonroom:commonroom /app/data
WORKDIR /app
USER commonroom
EXPOSE 8000
# /healthz returns 503 when the database or channel layer is down; urlopen raises on that.
# It is asked with a host name the app accepts (the first of ALLOWED_HOSTS).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, sys, urllib.request as u; h = os.environ.get('ALLOWED_HOSTS', 'localhost').split(',')[0].strip().lstrip('.'); h = 'localhost' if h in ('', '*') else h; sys.exit(0 if u.urlopen(u.Request('http://127.0.0.1:8000/healthz', headers={'Host': h}), timeout=4).status == 200 else 1)"
CMD ["python", "-m", "commonroom.serve", "-b", "0.0.0.0", "-p", "8000"]

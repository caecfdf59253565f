# The example service of the compose file: the FastAPI + structlog app of sidewatch's
# end-to-end tests (tests/app/app.py), logging JSON to /var/log/app/app.log.
# Build context: tests/app (see docker-compose.yaml), so the app is not copied here.
#   docker build -f deploy/compose/app.Dockerfile -t sidewatch-example-app tests/app
# PYTHON_IMAGE: any Debian-based image with python3 and its venv module.
ARG PYTHON_IMAGE=docker.io/library/python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
# The app's dependencies (the pins of tests/requirements.txt), in a venv.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir \
        'fastapi~=0.165.0' 'uvicorn~=0.54.0' 'structlog~=26.1' \
    && mkdir -p /var/log/app \
    && touch /var/log/app/.keep \
    && chown -R 10001:10001 /var/log/app
COPY app.py /app/app.py
# /var/log/app is meant to be a volume shared with the sidecar, which reads it as
# 65532: the app's files are created 0644 (umask 022), readable by it. The `.keep` file
# matters: Docker initialises an empty named volume from the image (contents *and* the
# directory's owner) only when the image's directory is not empty; without it the
# volume stays root-owned and the app (10001) cannot create its log.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    APP_LOG_PATH=/var/log/app/app.log \
    APP_VERSION=1.0.0
USER 10001:10001
WORKDIR /app
EXPOSE 8000
CMD ["uvicorn", "app:app", "--app-dir", "/app", "--host", "0.0.0.0", "--port", "8000", "--no-access-log"]

# OpenPrem webapp image.  Build context: the repository root (compose/compose.yaml does this):
#   docker build -f docker/webapp.Dockerfile -t openprem-webapp .
# Debian slim (glibc), not Alpine: xeddsa and other crypto wheels have no musl builds.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/openprem
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY webapp ./webapp
COPY coreapp ./coreapp
COPY chatd ./chatd
COPY openprem ./openprem
# Data, media, chatd and log directories belong to the non-root user; named volumes mounted there
# start with this ownership.
RUN pip install --no-compile . \
 && groupadd --system --gid 10001 whatsapp \
 && useradd --system --uid 10001 --gid whatsapp --home-dir /nonexistent --shell /usr/sbin/nologin whatsapp \
 && install -d -m 0700 -o whatsapp -g whatsapp /usr/local/wamedia /usr/local/waent/data /usr/local/waent/chatd /var/log/whatsapp
# Daily log cleanup, as in the On-Prem images (the host cron runs `docker exec <id> /opt/whatsapp/bin/cleanup.sh`).
COPY docker/cleanup.sh /opt/whatsapp/bin/cleanup.sh
RUN chmod 0755 /opt/whatsapp/bin/cleanup.sh
USER whatsapp
WORKDIR /usr/local/waent
# HTTPS API (WA_WEB_PORT).
EXPOSE 443
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=6 \
  CMD ["python", "-m", "openprem", "healthcheck", "webapp"]
CMD ["python", "-m", "webapp"]

# OpenPrem chatd image.  Build context: the repository root (compose/compose.yaml does this):
#   docker build -f docker/chatd.Dockerfile -t openprem-chatd .
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
USER whatsapp
WORKDIR /usr/local/waent
# Chat service (WA_SANDBOX_PORT, WA_SANDBOX_FALLBACK_PORT) and media host (WA_SANDBOX_MEDIA_PORT).  The admin API
# (WA_SANDBOX_ADMIN_PORT) has no authentication and stays on the container's loopback: `docker exec … python -m chatd`.
EXPOSE 5222 443 9092
HEALTHCHECK --interval=10s --timeout=10s --start-period=60s --retries=6 \
  CMD ["python", "-m", "openprem", "healthcheck", "chatd"]
CMD ["python", "-m", "chatd"]

# Stand-in for python:3.11-slim (the compose smoke test, when the real image cannot be pulled): Debian bookworm's
# Python 3.11 with pip, `python` and `pip` on PATH, pip allowed to install system-wide as in the official image.
FROM openprem-standin/bookworm:latest
ENV LANG=C.UTF-8
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && ln -s /usr/bin/python3 /usr/local/bin/python \
 && ln -sf /usr/bin/pip3 /usr/local/bin/pip
CMD ["python3"]

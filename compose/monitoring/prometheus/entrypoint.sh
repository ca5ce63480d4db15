#!/bin/sh
# Prometheus's entrypoint in compose.monitoring.yaml: writes WA_WEB_API_KEY (from compose/.env) to the tmpfs file
# that prometheus.yml's `credentials_file` names, drops it from the environment, then runs Prometheus ("$@").
set -eu
key_file="${OPENPREM_API_KEY_FILE:-/run/openprem/web_api_key}"
: "${WA_WEB_API_KEY:?WA_WEB_API_KEY is empty: fill compose/.env (see compose/env.example)}"
umask 077
printf '%s' "$WA_WEB_API_KEY" > "$key_file"
unset WA_WEB_API_KEY
exec "$@"

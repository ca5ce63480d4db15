#!/bin/sh
# PostgreSQL init script: compose mounts it in /docker-entrypoint-initdb.d, and the image runs it once, when it
# creates the data directory.  It makes the apps' own role, owner of the apps' database and of nothing else, so
# webapp and coreapp never connect as the superuser (which only this init uses).  The password is WA_DB_PASSWORD
# (compose/.env), read with psql's \getenv so that it is in no command line.  No `set -u`: the image sources
# this file instead of running it when it is not executable.
set -e
export OPENPREM_DB_USER="${OPENPREM_DB_USER:-openprem}"
export OPENPREM_DB_NAME="${OPENPREM_DB_NAME:-openprem}"
if [ -z "${WA_DB_PASSWORD:-}" ]; then
    echo "postgres-init: CRITICAL: WA_DB_PASSWORD is not set (fill compose/.env, see compose/env.example)" >&2
    exit 1
fi
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres <<'SQL'
\getenv app_user OPENPREM_DB_USER
\getenv app_db OPENPREM_DB_NAME
\getenv app_password WA_DB_PASSWORD
CREATE ROLE :"app_user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"app_db" FROM PUBLIC;
SQL

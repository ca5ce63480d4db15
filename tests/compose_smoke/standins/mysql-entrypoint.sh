#!/bin/sh
# Entrypoint of the mysql:8.0 stand-in (MariaDB 10.11): what compose/compose.yaml asks of the official image.
# On an empty data directory: a root password (MYSQL_ROOT_PASSWORD, required), root only from MYSQL_ROOT_HOST
# (default %), MYSQL_DATABASE, MYSQL_USER/MYSQL_PASSWORD (all rights on MYSQL_DATABASE), then every *.sql, *.sql.gz
# and *.sh in /docker-entrypoint-initdb.d, on a server without networking; then the server itself, as mysql.
# MySQL-only server options MariaDB does not know (--default-authentication-plugin) are dropped: MariaDB's
# default is mysql_native_password already.  The port is the server's MYSQL_TCP_PORT, as for mysqld.
set -e

if [ "${1#-}" != "$1" ]; then set -- mysqld "$@"; fi
if [ "$1" != mysqld ] && [ "$1" != mariadbd ]; then exec "$@"; fi
shift
for arg in "$@"; do
    shift
    case "$arg" in
        --default-authentication-plugin=*|--default_authentication_plugin=*) ;;
        *) set -- "$@" "$arg" ;;
    esac
done

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
if [ "$(id -u)" = 0 ]; then
    install -d -o mysql -g mysql /run/mysqld
    chown -R mysql:mysql "$datadir"
fi

sql_string() {  # a value as an SQL string literal
    printf "'%s'" "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g")"
}

if [ ! -d "$datadir/mysql" ]; then
    if [ -z "${MYSQL_ROOT_PASSWORD:-}" ]; then
        echo "mysql-standin: error: database is uninitialized and MYSQL_ROOT_PASSWORD is not set" >&2
        exit 1
    fi
    echo "mysql-standin: initialising $datadir"
    mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve > /dev/null
    mariadbd --user=mysql --datadir="$datadir" --skip-networking --socket="$socket" &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket="$socket" -uroot ping > /dev/null 2>&1 && break
        sleep 1
    done
    root_host="${MYSQL_ROOT_HOST:-%}"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "DROP USER IF EXISTS 'mysql'@'localhost';"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$MYSQL_ROOT_PASSWORD");"
        if [ "$root_host" != localhost ]; then
            echo "CREATE USER 'root'@$(sql_string "$root_host") IDENTIFIED BY $(sql_string "$MYSQL_ROOT_PASSWORD");"
            echo "GRANT ALL ON *.* TO 'root'@$(sql_string "$root_host") WITH GRANT OPTION;"
        fi
        if [ -n "${MYSQL_DATABASE:-}" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [ -n "${MYSQL_USER:-}" ] && [ -n "${MYSQL_PASSWORD:-}" ]; then
            echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
            if [ -n "${MYSQL_DATABASE:-}" ]; then
                echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(sql_string "$MYSQL_USER")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket="$socket" -uroot
    export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh) echo "mysql-standin: running $f"; if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
            *.sql) echo "mysql-standin: running $f"; mariadb --socket="$socket" -uroot ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} < "$f" ;;
            *.sql.gz) echo "mysql-standin: running $f"; gunzip -c "$f" | mariadb --socket="$socket" -uroot ${MYSQL_DATABASE:+"$MYSQL_DATABASE"} ;;
        esac
    done
    unset MYSQL_PWD
    kill "$pid"
    wait "$pid" || true
    echo "mysql-standin: initialised"
fi

exec mariadbd --user=mysql --datadir="$datadir" --socket="$socket" "$@"

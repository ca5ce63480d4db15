#!/bin/sh
# Entrypoint of the compose broker (eclipse-mosquitto:2): writes its password file and ACL, then runs the command
# (mosquitto).  The bus passwords come from WA_MQTT_WEBAPP_PASSWORD and WA_MQTT_COREAPP_PASSWORD (compose/.env;
# without both the broker does not start) and reach mosquitto_passwd on stdin, never in argv.  Everything is
# written to a tmpfs (MOSQUITTO_AUTH_DIR), afresh at every start: a changed password takes effect on a restart and
# nothing secret is persisted.  The `healthcheck` identity gets a random password each time, kept in the client
# config that the health check's mosquitto_sub reads (XDG_CONFIG_HOME=$MOSQUITTO_AUTH_DIR).
set -eu

auth_dir="${MOSQUITTO_AUTH_DIR:-/mosquitto/auth}"
acl_source="${MOSQUITTO_ACL_SOURCE:-/mosquitto/config/mosquitto.acl}"
data_dir="${MOSQUITTO_DATA_DIR:-/mosquitto/data}"

missing=""
for name in WA_MQTT_WEBAPP_PASSWORD WA_MQTT_COREAPP_PASSWORD; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || missing="$missing $name"
done
if [ -n "$missing" ]; then
    echo "mosquitto-entrypoint: CRITICAL: not set:$missing (fill compose/.env, see compose/env.example)" >&2
    exit 1
fi

umask 077
mkdir -p "$auth_dir"
chmod 700 "$auth_dir"
: > "$auth_dir/passwd.new"
add_user() {  # <user> <password>
    printf '%s\n%s\n' "$2" "$2" | mosquitto_passwd "$auth_dir/passwd.new" "$1" > /dev/null
}
add_user webapp "$WA_MQTT_WEBAPP_PASSWORD"
add_user coreapp "$WA_MQTT_COREAPP_PASSWORD"
health="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
add_user healthcheck "$health"
printf '%s\n' "-u healthcheck" "-P $health" > "$auth_dir/mosquitto_sub"
unset WA_MQTT_WEBAPP_PASSWORD WA_MQTT_COREAPP_PASSWORD health value
mv "$auth_dir/passwd.new" "$auth_dir/passwd"
cp "$acl_source" "$auth_dir/mosquitto.acl"

# Mosquitto 2.1 opens these after dropping to the mosquitto user and wants them to be its own, mode 0600.
if [ "$(id -u)" = 0 ] && id mosquitto > /dev/null 2>&1; then
    chown mosquitto:mosquitto "$auth_dir" "$auth_dir/passwd" "$auth_dir/mosquitto.acl"
    chown -R mosquitto:mosquitto "$data_dir" 2> /dev/null || true
fi
exec "$@"

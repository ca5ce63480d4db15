#!/bin/sh
# Log cleanup inside the webapp and coreapp images, as in the On-Prem images: the host's cron runs
#   docker exec <container> /opt/whatsapp/bin/cleanup.sh
# It deletes all but the newest 30 rotated log files of this container's process in WA_LOG_DIR, by running
# `python -m coreapp cleanup` or `python -m webapp cleanup` (shared/logcleanup.py).
#
# Which process: the first argument (coreapp | webapp), else OPENPREM_PROCESS, else what PID 1 runs
# (`python -m coreapp` / `python -m webapp`, the images' CMD).  The container's working directory and
# environment (WA_CONFIG_FILE, WA_LOG_DIR) are those of `docker exec`, so the same settings apply.
set -eu

process="${1:-${OPENPREM_PROCESS:-}}"
if [ -z "$process" ] && [ -r /proc/1/cmdline ]; then
    cmdline=$(tr '\0' ' ' < /proc/1/cmdline)
    case "$cmdline" in
        *"-m coreapp"*) process=coreapp ;;
        *"-m webapp"*) process=webapp ;;
    esac
fi
case "$process" in
    coreapp|webapp) ;;
    *)
        echo "cleanup.sh: cannot tell whether this is coreapp or webapp; run: cleanup.sh coreapp|webapp" >&2
        exit 2
        ;;
esac
exec "${PYTHON:-python}" -m "$process" cleanup

#!/bin/sh
# Daily log cleanup inside the webapp and coreapp images, as in the On-Prem images: the host's cron runs
#   docker exec <container> /opt/whatsapp/bin/cleanup.sh
# It will run `python -m coreapp cleanup` or `python -m webapp cleanup` (keep the newest 30 log files in
# WA_LOG_DIR).  Those commands come with a later issue; until then this placeholder only says so.
# It exits 0 so that the host's cron job does not report a failure every night.
set -eu

echo "cleanup.sh: log cleanup is not implemented yet (it will run 'python -m coreapp cleanup' or"
echo "'python -m webapp cleanup'); RotatingFileHandler already caps each process at 30 files. Nothing done."
exit 0

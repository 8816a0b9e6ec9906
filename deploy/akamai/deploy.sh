#!/bin/sh
# Deploy slack-logs to Akamai Functions and schedule a pass every 5 minutes (the platform's
# shortest cron interval). Needs `spin` with the `aka` plugin and `spin aka login` done.
#
# Limits there: a request gets ~30 s, so max_run_seconds stays at 25 or below (a long backfill
# spreads over several passes and resumes from its checkpoint); the key-value store has no
# atomics (the collector uses only get/set); records from the stdout sink land in `spin aka logs`.
#
# `spin aka cron` sends a plain GET with no headers, so the schedule passes the collect secret as
# `/collect?key=<collect_secret>` (the collector accepts that besides the Authorization header).
# Use a URL-safe secret, e.g. `export COLLECT_SECRET=$(openssl rand -hex 32)`.
set -eu
cd "$(dirname "$0")/../.."
: "${COLLECT_SECRET:?set COLLECT_SECRET (URL-safe, e.g. openssl rand -hex 32): the app and the cron job share it}"

cargo xtask build
spin aka deploy --from spin.toml --no-confirm --variable @deploy/akamai/variables.toml \
  --variable "collect_secret=$COLLECT_SECRET"
spin aka cron create --from spin.toml --schedule "*/5 * * * *" \
  --path-and-query "/collect?key=$COLLECT_SECRET" --name slack-logs-collect
spin aka cron list --from spin.toml

#!/usr/bin/env bash
# A local multi-process scale-out demo: Redis broker check, two Celery workers, dagster-daemon and
# the webserver, on a PostgreSQL instance. `make celery-up` / `make celery-down` call this.
#   deploy/celery/local.sh up     start everything (idempotent), print where the logs are
#   deploy/celery/local.sh down   stop what `up` started (by the process groups it recorded)
# Then: `make celery-backfill` queues the demo universe as runs the workers share.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=.venv/bin
STATE=.market_pipeline/celery
PG_SERVER=${MARKET_PIPELINE_PG_SERVER:-postgresql+psycopg2://postgres@127.0.0.1:5432}
export MARKET_PIPELINE_HOME=${MARKET_PIPELINE_HOME:-$PWD/$STATE}
export DAGSTER_PG_URL=${DAGSTER_PG_URL:-$PG_SERVER/market_pipeline_dagster}
export MARKET_PIPELINE_DB_URL=${MARKET_PIPELINE_DB_URL:-$PG_SERVER/market_pipeline}
export DAGSTER_CELERY_BROKER_URL=${DAGSTER_CELERY_BROKER_URL:-redis://127.0.0.1:6379/0}
export DAGSTER_CELERY_BACKEND_URL=${DAGSTER_CELERY_BACKEND_URL:-$DAGSTER_CELERY_BROKER_URL}
export DAGSTER_CELERY_QUEUE=${DAGSTER_CELERY_QUEUE:-dagster}
export MARKET_PIPELINE_PARTITIONS_PER_RUN=${MARKET_PIPELINE_PARTITIONS_PER_RUN:-60}
export PATH="$PWD/$BIN:$PATH"   # dagster-celery runs `celery` from PATH

start() {  # name, command...: in a session of its own, output in $STATE/<name>.log
  local name=$1; shift
  if [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$STATE/$name.pid"))"; return
  fi
  setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
  echo $! >"$STATE/$name.pid"
  echo "started $name (pid $!, log $STATE/$name.log)"
}

create_database() {  # URL: create its database when the server does not have it yet
  "$BIN/python" - "$1" <<'PY'
import sys
import sqlalchemy as sa
url = sa.engine.make_url(sys.argv[1])
admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
with admin.connect() as conn:
    if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": url.database}).first():
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}"')
        print(f"created database {url.database}")
PY
}

up() {
  mkdir -p "$STATE"
  "$BIN/python" -c "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()" \
    "$DAGSTER_CELERY_BROKER_URL" \
    || { echo "no Redis at $DAGSTER_CELERY_BROKER_URL: start it (DEVELOPERS.md)" >&2; exit 1; }
  create_database "$DAGSTER_PG_URL"
  create_database "$MARKET_PIPELINE_DB_URL"
  export DAGSTER_HOME; DAGSTER_HOME=$("$BIN/market-pipeline" dagster-home)
  "$BIN/market-pipeline" migrate
  local config; config=$("$BIN/python" -c \
    "from market_pipeline.package_data import celery_worker_config; print(celery_worker_config())")
  for worker in w1 w2; do
    start "$worker" "$BIN/dagster-celery" worker start -A dagster_celery.app -y "$config" \
      -q "$DAGSTER_CELERY_QUEUE" -n "$worker" -- --concurrency=1
  done
  start daemon "$BIN/dagster-daemon" run -w workspace.yaml
  start webserver "$BIN/dagster-webserver" -w workspace.yaml -h 127.0.0.1 -p 3000
  echo "DAGSTER_HOME=$DAGSTER_HOME; UI on http://127.0.0.1:3000"
}

down() {
  for name in webserver daemon w1 w2; do
    [ -f "$STATE/$name.pid" ] || continue
    local pid; pid=$(cat "$STATE/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -KILL -- "-$pid" 2>/dev/null || true
      echo "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
  done
}

backfill() {
  export DAGSTER_HOME; DAGSTER_HOME=$("$BIN/market-pipeline" dagster-home)
  "$BIN/market-pipeline" backfill --submit --workspace workspace.yaml "$@"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  backfill) shift; backfill "$@" ;;
  *) echo "usage: $0 up|down|backfill [backfill options]" >&2; exit 2 ;;
esac

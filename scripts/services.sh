#!/usr/bin/env bash
# Start (or stop) private PostgreSQL 15 and Redis servers on loopback for tests and CI.
#   scripts/services.sh start   -> prints the environment to export
#   scripts/services.sh stop
# Data lives under ${TESSERA_SERVICES_DIR:-/tmp/tessera-services}; ports 55432 and 56379.
set -euo pipefail
DIR=${TESSERA_SERVICES_DIR:-/tmp/tessera-services}
PGPORT=${TESSERA_PG_PORT:-55432}
REDISPORT=${TESSERA_REDIS_PORT:-56379}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)

as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  mkdir -p "$DIR"
  if [ "$(id -u)" = "0" ]; then chown postgres:postgres "$DIR" 2>/dev/null || true; chmod 777 "$DIR"; fi
  if [ ! -f "$DIR/pg/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$DIR/pg" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" status >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -l "$DIR/pg.log" -w \
      -o "-p $PGPORT -k $DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 -c shared_buffers=256MB" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qtAc "SELECT 1 FROM pg_roles WHERE rolname='tessera_app'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE ROLE tessera_app LOGIN PASSWORD 'tessera_app'"
  if command -v redis-server >/dev/null; then
    if ! redis-cli -p "$REDISPORT" ping >/dev/null 2>&1; then
      redis-server --port "$REDISPORT" --bind 127.0.0.1 --dir "$DIR" --daemonize yes \
        --save "" --appendonly no --logfile "$DIR/redis.log" >/dev/null
    fi
  fi
  echo "export TESSERA_TEST_PG_ADMIN_URL=postgresql://postgres@127.0.0.1:$PGPORT/postgres"
  echo "export TESSERA_TEST_REDIS_URL=redis://127.0.0.1:$REDISPORT/0"
}

stop() {
  as_pg "$PGBIN/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
  redis-cli -p "$REDISPORT" shutdown nosave >/dev/null 2>&1 || true
}

"${1:-start}"

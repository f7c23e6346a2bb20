#!/usr/bin/env bash
# Runs one command with a real PostgreSQL server and a real Ray head beside it, both on loopback in a temporary
# folder, for tests/cluster:   scripts/services.sh .venv/bin/pytest
# The command sees LORALAB_TEST_PG_URL and LORALAB_TEST_RAY_ADDRESS (and the Ray token's RAY_AUTH_* variables).
# Installs Debian's postgresql if missing (as root, as `make test` does for chromium). Both servers are stopped and
# their folder removed when the command ends, however it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}

WORK=$(mktemp -d /tmp/loralab-services.XXXXXX)
chmod 755 "$WORK"
RAY_PID="" PG_STARTED=""

free_port() { "$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user the package creates.
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi; }

stop_services() {
    set +e
    if [ -n "$RAY_PID" ]; then
        kill -TERM "$RAY_PID" 2>/dev/null  # `ray start --block` stops the processes of its own node on SIGTERM
        wait "$RAY_PID" 2>/dev/null
    fi
    [ -n "$PG_STARTED" ] && as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m immediate -w stop >/dev/null
    rm -rf "$WORK"
}
trap stop_services EXIT

# --- PostgreSQL: a throwaway cluster, trust authentication, listening on 127.0.0.1 only
if [ -z "$(pg_bin)" ]; then
    echo "services: installing Debian's postgresql" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PG_BIN=$(pg_bin)
mkdir "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U postgres -A trust -E UTF8 --locale=C --no-sync >/dev/null
PG_PORT=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$WORK/pg -c fsync=off" >/dev/null
PG_STARTED=1
export LORALAB_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres"
echo "services: PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') at 127.0.0.1:$PG_PORT" >&2

# --- Ray: a head node with token authentication on, its dashboard (the job API) on loopback, small on purpose
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$WORK/ray-token"
(umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_hex(32))' >"$RAY_AUTH_TOKEN_PATH")
RAY_DASHBOARD_PORT=$(free_port)
"$BIN/ray" start --head --block --disable-usage-stats \
    --node-ip-address=127.0.0.1 --port="$(free_port)" --temp-dir="$WORK/ray" \
    --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port="$RAY_DASHBOARD_PORT" \
    --dashboard-agent-listen-port="$(free_port)" --ray-client-server-port="$(free_port)" \
    --num-cpus=2 --num-gpus=0 --object-store-memory=200000000 >"$WORK/ray.log" 2>&1 &
RAY_PID=$!
export LORALAB_TEST_RAY_ADDRESS="http://127.0.0.1:$RAY_DASHBOARD_PORT"
ray_up() { "$BIN/python" -c "from ray.job_submission import JobSubmissionClient as C; C('$1')" >/dev/null 2>&1; }
for _ in $(seq 120); do
    ray_up "$LORALAB_TEST_RAY_ADDRESS" && break
    kill -0 "$RAY_PID" 2>/dev/null || break
    sleep 1
done
if ! ray_up "$LORALAB_TEST_RAY_ADDRESS"; then
    cat "$WORK/ray.log" >&2
    echo "services: the Ray head did not start" >&2
    exit 1
fi
echo "services: Ray $("$BIN/python" -c 'import ray; print(ray.__version__)') at $LORALAB_TEST_RAY_ADDRESS" >&2

set +e
"$@"
exit $?

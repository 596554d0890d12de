#!/usr/bin/env bash
# Make sure the PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) that the tests use
# answer; start them with this machine's own commands if they do not.
set -uo pipefail

pg_ok() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || python3 - <<'PY'
import socket, sys
try:
    socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if ! pg_ok; then
  echo "services: PostgreSQL is not answering; trying to start it" >&2
  command -v pg_ctlcluster >/dev/null && pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start
  for _ in $(seq 30); do pg_ok && break; sleep 1; done
fi
if ! redis_ok; then
  echo "services: Redis is not answering; trying to start it" >&2
  command -v redis-server >/dev/null && redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
    --save "" --appendonly no --dir /tmp --logfile /tmp/redis-ci.log
  for _ in $(seq 30); do redis_ok && break; sleep 1; done
fi
pg_ok || { echo "services: PostgreSQL on 127.0.0.1:5432 is required by the tests and is not running." >&2; exit 1; }
redis_ok || { echo "services: Redis on 127.0.0.1:6379 is required by the tests and is not running." >&2; exit 1; }
echo "services: PostgreSQL and Redis answer." >&2

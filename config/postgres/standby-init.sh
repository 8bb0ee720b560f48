#!/bin/sh
# The entrypoint of the `db-standby` service: on an empty volume, a copy of the primary made
# with pg_basebackup by the replication role (-R writes standby.signal and primary_conninfo, so
# the server starts as a streaming standby); then the command (the image's own entrypoint).
set -eu
: "${REPLICATION_USER:?set REPLICATION_USER in .env}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD in .env}"
PRIMARY_HOST=${PRIMARY_HOST:-db}
PRIMARY_PORT=${PRIMARY_PORT:-5432}

# pg_basebackup must write the data as the user that runs the server.
as_postgres() {
    if [ "$(id -u)" = 0 ]; then gosu postgres "$@"; else "$@"; fi
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA"; fi
    chmod 700 "$PGDATA"
    attempt=1
    until as_postgres env PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup \
        --host="$PRIMARY_HOST" --port="$PRIMARY_PORT" --username="$REPLICATION_USER" \
        --pgdata="$PGDATA" --write-recovery-conf --wal-method=stream --checkpoint=fast \
        --no-password
    do
        # The primary may still be starting; a half-written copy is removed before the next try.
        if [ "$attempt" -ge 30 ]; then
            echo "standby-init: pg_basebackup failed $attempt times; see above" >&2
            exit 1
        fi
        attempt=$((attempt + 1))
        find "$PGDATA" -mindepth 1 -delete
        sleep 2
    done
fi
exec "$@"

#!/bin/sh
# Run once by the postgres image when it initialises the `db` volume
# (/docker-entrypoint-initdb.d): a role that may stream the WAL to standbys, and the pg_hba rule
# that admits it. The image's own rule (`host all all all scram-sha-256`) does not: `all` never
# matches a replication connection. A volume made before this script existed lacks both:
# `docker compose down -v` starts over (this deletes the data), or run this file's two steps by
# hand and `SELECT pg_reload_conf()`.
set -eu
: "${REPLICATION_USER:?set REPLICATION_USER in .env}"
: "${REPLICATION_PASSWORD:?set REPLICATION_PASSWORD in .env}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v user="$REPLICATION_USER" -v password="$REPLICATION_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I WITH REPLICATION LOGIN PASSWORD %L', :'user', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SQL
printf 'host replication %s all scram-sha-256\n' "$REPLICATION_USER" >> "$PGDATA/pg_hba.conf"

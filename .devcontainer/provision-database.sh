#!/usr/bin/env bash
# Provisions, in the compose database, the role and database the test suite connects with
# (database.url of config/test.toml), as .ci/run does on CI, so that the README's test command
# passes inside the Dev Container with nothing to configure. Connects as the db service's
# superuser: POSTGRES_USER and POSTGRES_PASSWORD from .env, which docker-compose.yml passes to
# the dev service. The server is where config/test.toml says (127.0.0.1:5432: the dev service
# shares the db service's network) unless PGHOST and PGPORT say otherwise. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

url=$(sed -n 's/^url = "\(postgres[^"]*\)"$/\1/p' config/test.toml | head -n 1)
pattern='^postgres(ql)?://([^:@/]+):([^@/]+)@([^:/]+):([0-9]+)/([^?]+)'
if [[ ! $url =~ $pattern ]]; then
    echo "config/test.toml: database.url must read postgres://user:password@host:port/database" >&2
    exit 1
fi
user=${BASH_REMATCH[2]} password=${BASH_REMATCH[3]} database=${BASH_REMATCH[6]}
export PGHOST=${PGHOST:-${BASH_REMATCH[4]}} PGPORT=${PGPORT:-${BASH_REMATCH[5]}}
export PGUSER=${POSTGRES_USER:?the db service\'s superuser: set POSTGRES_USER in .env}
export PGPASSWORD=${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}
export PGDATABASE=postgres

for _ in $(seq 1 60); do
    pg_isready -q && break
    sleep 1
done
psql -X -q -v ON_ERROR_STOP=1 -v user="$user" -v password="$password" -v db="$database" \
    < .ci/provision-test-database.sql
echo "role $user and database $database are ready on $PGHOST:$PGPORT"

#!/bin/sh
# Creates one database per service, as listed in TASKSWARM_DATABASES (comma or space separated).
# The postgres image runs the scripts of /docker-entrypoint-initdb.d once, on an empty data volume;
# each service then applies its own migrations at start-up.
set -eu

for db in $(echo "${TASKSWARM_DATABASES:-}" | tr ',' ' '); do
    echo "taskswarm: creating database $db"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --set db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
done

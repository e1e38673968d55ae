#!/bin/sh
# One database per service, each owned by the service's own login role with its own password, so that a
# service can reach its database and no other: CONNECT is revoked from PUBLIC on every one of them.
#
#   TASKSWARM_DATABASES   "database:role" pairs, comma or space separated
#                         (e.g. "taskswarm_auth:auth_svc,taskswarm_project:project_svc")
#   <ROLE>_DB_PASSWORD    the role's password (role upper-cased: AUTH_SVC_DB_PASSWORD for auth_svc),
#   <ROLE>_DB_PASSWORD_FILE  or a file holding it (Docker/Kubernetes secrets); the file wins
#   POSTGRES_USER         the superuser to run as (PGHOST/PGPORT/PGPASSWORD are honoured as by psql)
#
# The postgres image runs /docker-entrypoint-initdb.d once, on an empty data volume. The script is
# idempotent, so it can also be re-run by hand to add a service or rotate passwords:
#   docker compose exec postgres /docker-entrypoint-initdb.d/10-create-databases.sh
# Each service then applies its own migrations at start-up, as its own role (it owns the schema).
set -eu

fail() {
    echo "taskswarm: $*" >&2
    exit 1
}

password_of() {
    var="$(printf '%s' "$1" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    eval "value=\${$var:-}"
    eval "file=\${${var}_FILE:-}"
    if [ -n "$file" ]; then
        [ -r "$file" ] || fail "$var""_FILE=$file is not readable"
        value="$(cat "$file")"
    fi
    [ -n "$value" ] || fail "no password for role $1: set $var or $var""_FILE"
    printf '%s' "$value"
}

pairs="$(echo "${TASKSWARM_DATABASES:-}" | tr ',' ' ')"
[ -n "$pairs" ] || fail "TASKSWARM_DATABASES is empty"

for pair in $pairs; do
    db="${pair%%:*}"
    role="${pair#*:}"
    # The names end up in environment variable names and in SQL identifiers: keep them plain.
    for name in "$db" "$role"; do
        case "$name" in
        '' | *[!a-z0-9_]* | [0-9]*) fail "bad entry '$pair' in TASKSWARM_DATABASES (want database:role, [a-z0-9_])" ;;
        esac
    done
    [ "$db" != "$pair" ] || fail "entry '$pair' in TASKSWARM_DATABASES has no role (want database:role)"
    password="$(password_of "$role")"

    echo "taskswarm: database $db, owned by role $role"
    # The password travels through the environment (\getenv), not the command line or the SQL text.
    TASKSWARM_ROLE_PASSWORD="$password" psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
        --username "$POSTGRES_USER" --dbname postgres --set db="$db" --set role="$role" <<'SQL'
\getenv password TASKSWARM_ROLE_PASSWORD
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
ALTER DATABASE :"db" OWNER TO :"role";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
done

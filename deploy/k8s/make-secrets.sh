#!/bin/sh
# Fills deploy/k8s/secrets/ (git-ignored) with what kustomization.yaml's generators turn into the
# Secrets and the public-key ConfigMap: random passwords for PostgreSQL's superuser, each service's
# role and MongoDB, and the Ed25519 key pair that signs and verifies tokens.
#
#   deploy/k8s/make-secrets.sh [folder]    # default: the secrets/ folder beside this script
#
# Files that exist are kept, so running it again never changes a password or a key that a running
# system uses; delete a file to have it made anew. Needs openssl (1.1.1 or later).
set -eu

dir="${1:-$(dirname "$0")/secrets}"
mkdir -p "$dir"
umask 077

if [ ! -e "$dir/db.env" ]; then
    # Hex: the passwords go into connection URLs as they are, so they must need no escaping.
    {
        echo "# Made by make-secrets.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ). Keep out of version control."
        for name in POSTGRES_PASSWORD AUTH_SVC_DB_PASSWORD PROJECT_SVC_DB_PASSWORD COMMENT_SVC_DB_PASSWORD \
            NOTIF_SVC_DB_PASSWORD MONGO_ROOT_PASSWORD NOTIF_SVC_MONGO_PASSWORD; do
            echo "$name=$(openssl rand -hex 24)"
        done
    } >"$dir/db.env.tmp"
    mv "$dir/db.env.tmp" "$dir/db.env"
    echo "made $dir/db.env"
fi

if [ ! -e "$dir/jwt_private.pem" ]; then
    openssl genpkey -algorithm ed25519 -out "$dir/jwt_private.pem.tmp"
    mv "$dir/jwt_private.pem.tmp" "$dir/jwt_private.pem"
    rm -f "$dir/jwt_public.pem"
    echo "made $dir/jwt_private.pem"
fi
if [ ! -e "$dir/jwt_public.pem" ]; then
    openssl pkey -in "$dir/jwt_private.pem" -pubout -out "$dir/jwt_public.pem"
    echo "made $dir/jwt_public.pem"
fi

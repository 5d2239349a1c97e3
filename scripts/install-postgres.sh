#!/usr/bin/env bash
# Installs PostgreSQL 15 from Debian's packages for the storage backends'
# tests (tests/tests/storage_backends.rs), unless an initdb is already
# under /usr/lib/postgresql. Only the binaries are used: each test starts a
# private cluster in a temporary directory (tests/src/postgres.rs), as the
# user `nobody` when run as root. The package's own cluster is not needed,
# so it is not started. Run as root, or as a user who may use sudo. The
# tests fail, rather than skipping, when PostgreSQL is missing.
set -euo pipefail

if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "PostgreSQL is installed"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "install-postgres.sh: PostgreSQL is missing; install the Debian package" >&2
    echo "postgresql-15 as root (apt-get install -y postgresql-15)" >&2
    exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-postgres.sh: no apt-get here; install PostgreSQL 15 so that" >&2
    echo "/usr/lib/postgresql/15/bin/initdb exists" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update
# The package creates (and may start) its own cluster on port 5432; the
# tests do not use it.
"${as_root[@]}" apt-get install -y postgresql-15

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "install-postgres.sh: initdb is still missing after apt-get install" >&2
    exit 1
fi
echo "PostgreSQL is installed"

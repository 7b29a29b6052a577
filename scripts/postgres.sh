# Sourced by .ci/run and bench/run: start_postgres starts Debian's
# PostgreSQL 15 (installing it if missing), creates the `dtr` role (allowed
# to create databases) and the `dtr` database, and exports
# DTR_TEST_POSTGRES_URL. Runs as root (as CI does); postgres itself refuses
# root, so the Debian cluster tools run it as the `postgres` user. Safe to
# run twice: an existing cluster is reused, a running one left running.

start_postgres() {
    local pg_bin=/usr/lib/postgresql/15/bin
    if [ ! -x "$pg_bin/postgres" ] || ! command -v pg_createcluster >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 postgresql-common >/dev/null
    fi
    if ! pg_lsclusters -h | awk '$1 == "15" && $2 == "main"' | grep -q .; then
        pg_createcluster 15 main >/dev/null
    fi
    if ! pg_lsclusters -h | awk '$1 == "15" && $2 == "main" && $4 == "online"' | grep -q .; then
        pg_ctlcluster 15 main start
    fi
    local port
    port=$(pg_lsclusters -h | awk '$1 == "15" && $2 == "main" { print $3 }')
    "$pg_bin/pg_isready" -h 127.0.0.1 -p "$port" -t 60 >/dev/null
    # A role that may create databases: every test makes its own and drops it.
    su postgres -s /bin/sh -c "psql -q -p $port -v ON_ERROR_STOP=1" <<'SQL'
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dtr') THEN
        CREATE ROLE dtr LOGIN CREATEDB PASSWORD 'dtr';
    END IF;
END $$;
SELECT 'CREATE DATABASE dtr OWNER dtr'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dtr')\gexec
SQL
    export DTR_TEST_POSTGRES_URL="postgres://dtr:dtr@127.0.0.1:$port/dtr"
    echo "PostgreSQL 15 on 127.0.0.1:$port (DTR_TEST_POSTGRES_URL set)"
}

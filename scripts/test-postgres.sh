#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster, for the PostgreSQL tests (issue 14).
#
#   scripts/test-postgres.sh [--tls] [--] CMD ARGS...
#
# Starts a fresh cluster in a short temporary directory under /tmp on a random 127.0.0.1 port,
# runs CMD with the variables below in its environment, then stops the cluster and deletes its
# directory (also when CMD fails or the script is interrupted). Exits with CMD's exit code, or
# with 125 when the cluster could not be set up (never runs CMD without a server).
#
# Exported to CMD:
#   KEYSTEAD_TEST_PG_URL        postgres://keystead:<pw>@127.0.0.1:<port>/keystead_test
#                               (role keystead owns database keystead_test; SCRAM-SHA-256 over TCP)
#   KEYSTEAD_TEST_PG_ADMIN_URL  postgres://postgres:<pw>@127.0.0.1:<port>/postgres (superuser)
#   KEYSTEAD_TEST_PG_CTL        path of an executable: `$KEYSTEAD_TEST_PG_CTL start|stop|restart|status
#                               [pg_ctl options]` (stop and restart default to -m fast and wait)
#   KEYSTEAD_TEST_PG_DATA, KEYSTEAD_TEST_PG_LOG   the data directory and the server log
# With --tls, also (ssl=on, certificate for localhost and 127.0.0.1 signed by a throwaway CA):
#   KEYSTEAD_TEST_PG_TLS_URL    postgres://keystead:<pw>@localhost:<port>/keystead_test
#                               ?sslmode=verify-full&sslrootcert=<KEYSTEAD_TEST_PG_CA>
#   KEYSTEAD_TEST_PG_CA         the CA certificate (PEM) that signed the server certificate
#   KEYSTEAD_TEST_PG_WRONG_CA   an unrelated CA certificate (PEM), for negative tests
#
# When KEYSTEAD_TEST_PG_URL is already set, that server is used, nothing is started and the
# other variables pass through as they are (with --tls, KEYSTEAD_TEST_PG_TLS_URL must be set).
#
# PostgreSQL comes from Debian's packages: when no /usr/lib/postgresql/*/bin/initdb exists the
# script installs postgresql-15 (or `postgresql`) with apt-get, which needs root. As root, the
# server runs as the `postgres` user (initdb refuses root). Environment: KEYSTEAD_TEST_PG_BIN
# (a directory holding initdb, pg_ctl, psql; default the newest /usr/lib/postgresql/*/bin).
# See docs/testing-postgres.md.
set -euo pipefail

me=test-postgres
die() {
    echo "$me: error: $*" >&2
    exit 125
}
usage() { # exit code
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "$1"
}
now() { echo "${EPOCHREALTIME/[.,]/}"; } # microseconds
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e6 }'; }
mask() { sed -E 's#(://[^:/@?]*):[^@/?]*@#\1:****@#' <<<"$1"; }

tls=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --tls) tls=1; shift ;;
        --) shift; break ;;
        -h | --help) usage 0 ;;
        -*) echo "$me: unknown option $1" >&2; usage 125 ;;
        *) break ;;
    esac
done
[[ $# -gt 0 ]] || usage 125
if ! command -v "$1" >/dev/null; then
    echo "$me: error: command not found: $1" >&2
    exit 127
fi

# --- an existing server -----------------------------------------------------------------------
if [[ -n "${KEYSTEAD_TEST_PG_URL:-}" ]]; then
    if [[ $tls == 1 && -z "${KEYSTEAD_TEST_PG_TLS_URL:-}" ]]; then
        die "--tls with an existing server (KEYSTEAD_TEST_PG_URL) needs KEYSTEAD_TEST_PG_TLS_URL (and KEYSTEAD_TEST_PG_CA, KEYSTEAD_TEST_PG_WRONG_CA) set too"
    fi
    echo "$me: using the existing server $(mask "$KEYSTEAD_TEST_PG_URL") (KEYSTEAD_TEST_PG_URL was set; nothing started)" >&2
    exec "$@"
fi

t0=$(now)

# --- binaries, installed from Debian's packages when missing ----------------------------------
find_bin() {
    if [[ -n "${KEYSTEAD_TEST_PG_BIN:-}" ]]; then
        [[ -x "$KEYSTEAD_TEST_PG_BIN/initdb" ]] && echo "$KEYSTEAD_TEST_PG_BIN"
        return 0
    fi
    local d
    d=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    [[ -x "$d" ]] && dirname "$d"
    return 0
}

apt_install() { # packages...; output to $aptlog, errors shown by the caller
    apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "$@" >>"$aptlog" 2>&1
}
install_pg() {
    [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed and installing it needs root: install Debian's postgresql-15 (or postgresql), or set KEYSTEAD_TEST_PG_BIN or KEYSTEAD_TEST_PG_URL"
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and there is no apt-get to install it"
    export DEBIAN_FRONTEND=noninteractive
    aptlog=$(mktemp /tmp/kspg-apt.XXXXXX)
    echo "$me: PostgreSQL not found, installing it from Debian's packages (log: $aptlog)" >&2
    # Try with the current package lists first; refresh them only when that fails.
    if ! apt_install postgresql-15 && ! apt_install postgresql; then
        apt-get update -q -o DPkg::Lock::Timeout=300 >>"$aptlog" 2>&1 || true
        if ! apt_install postgresql-15 && ! apt_install postgresql; then
            tail -n 30 "$aptlog" >&2
            die "could not install PostgreSQL with apt-get (full log: $aptlog)"
        fi
    fi
    rm -f "$aptlog"
}

installed=""
PGBIN=$(find_bin)
if [[ -z "$PGBIN" ]]; then
    [[ -z "${KEYSTEAD_TEST_PG_BIN:-}" ]] || die "KEYSTEAD_TEST_PG_BIN=$KEYSTEAD_TEST_PG_BIN has no initdb"
    install_pg
    PGBIN=$(find_bin)
    [[ -n "$PGBIN" ]] || die "PostgreSQL was installed but no /usr/lib/postgresql/*/bin/initdb was found"
    installed=" (installed in $(secs "$t0" "$(now)") s)"
fi
for b in initdb pg_ctl psql; do
    [[ -x "$PGBIN/$b" ]] || die "$PGBIN/$b is missing"
done
if [[ $tls == 1 ]] && ! command -v openssl >/dev/null; then
    [[ "$(id -u)" == 0 ]] || die "--tls needs openssl"
    aptlog=$(mktemp /tmp/kspg-apt.XXXXXX)
    apt_install openssl || { tail -n 30 "$aptlog" >&2; die "could not install openssl (log: $aptlog)"; }
    rm -f "$aptlog"
fi
t1=$(now)

# --- the cluster's directory and owner ---------------------------------------------------------
# Reap clusters left behind by runs that were killed (SIGKILL skips the trap): their owner is gone.
for old in /tmp/kspg.??????; do
    [[ -f "$old/owner.pid" ]] || continue
    pid=$(cat "$old/owner.pid" 2>/dev/null || true)
    # /proc, not kill -0: kill -0 fails for another user's live process when we are not root.
    if [[ "$pid" =~ ^[0-9]+$ && ! -d "/proc/$pid" ]]; then
        if [[ -x "$old/ctl" ]]; then "$old/ctl" stop -m immediate >/dev/null 2>&1 || true; fi
        rm -rf "$old"
    fi
done

if [[ "$(id -u)" == 0 ]]; then
    owner=postgres
    if ! id -u "$owner" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$owner" \
            || die "could not create the system user postgres"
    fi
    as_owner=(runuser -u "$owner" --)
else
    owner=$(id -un)
    as_owner=()
fi

# Short path: a Unix socket path is at most 107 bytes.
dir=$(mktemp -d /tmp/kspg.XXXXXX)
data=$dir/data
sock=$dir/s
log=$dir/server.log
echo $$ >"$dir/owner.pid"

# shellcheck disable=SC2317 # called from the EXIT trap
stop_cluster() {
    if [[ -f "$data/postmaster.pid" ]]; then
        "$dir/ctl" stop -m immediate >/dev/null 2>&1 || true
        # Last resort when pg_ctl could not stop it: the postmaster's pid is line 1.
        if [[ -f "$data/postmaster.pid" ]]; then
            local pm
            pm=$(head -n 1 "$data/postmaster.pid" 2>/dev/null || true)
            if [[ "$pm" =~ ^[0-9]+$ ]]; then kill -9 "$pm" 2>/dev/null || true; fi
        fi
    fi
}
# shellcheck disable=SC2317 # the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop_cluster
    rm -rf "$dir"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Readable by the test process (certificates); the data and socket directories stay 0700.
chmod 0755 "$dir"
mkdir -m 0700 "$sock"
touch "$log"
chown "$owner:" "$dir" "$sock" "$log"

fail_start() { # message [log files to show; default: pg_ctl's and the server's]
    local msg=$1 f
    shift
    [[ $# -gt 0 ]] || set -- "$dir/pg_ctl.log" "$log"
    echo "$me: $msg" >&2
    for f in "$@"; do
        if [[ -s "$f" ]]; then
            echo "---- last lines of $f" >&2
            tail -n 40 "$f" >&2
        fi
    done
    die "$msg"
}

rand_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }
app_pw=$(rand_hex)
admin_pw=$(rand_hex)

# Run as the owner from a directory it can enter (the caller's may be under /root).
own() { (cd "$dir" && "${as_owner[@]}" "$@"); }

own "$PGBIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C --no-sync \
    >"$dir/initdb.log" 2>&1 || fail_start "initdb failed" "$dir/initdb.log"

# --- TLS material -----------------------------------------------------------------------------
if [[ $tls == 1 ]]; then
    tlsdir=$dir/tls
    mkdir "$tlsdir"
    (
        cd "$tlsdir"
        mkca() { # name subject
            openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                -keyout "$1.key" -out "$1.crt" -days 3 -subj "$2" \
                -addext basicConstraints=critical,CA:TRUE \
                -addext keyUsage=critical,keyCertSign,cRLSign
        }
        mkca ca "/CN=keystead test CA"
        mkca wrong-ca "/CN=keystead unrelated test CA"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout server.key -out server.csr -subj /CN=localhost
        printf '%s\n' \
            basicConstraints=critical,CA:FALSE \
            keyUsage=critical,digitalSignature,keyEncipherment \
            extendedKeyUsage=serverAuth \
            subjectAltName=DNS:localhost,IP:127.0.0.1 \
            subjectKeyIdentifier=hash \
            authorityKeyIdentifier=keyid >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out server.crt -days 3 -extfile server.ext
        rm -f ca.key wrong-ca.key server.csr server.ext ca.srl
    ) >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the test certificates"; }
    chmod 0755 "$tlsdir"
    chmod 0644 "$tlsdir/ca.crt" "$tlsdir/wrong-ca.crt" "$tlsdir/server.crt"
    chmod 0600 "$tlsdir/server.key"
    chown "$owner:" "$tlsdir/server.key" "$tlsdir/server.crt"
fi

# --- configuration ----------------------------------------------------------------------------
{
    echo "local all all trust"
    [[ $tls == 1 ]] && echo "hostssl all all 127.0.0.1/32 scram-sha-256"
    echo "host all all 127.0.0.1/32 scram-sha-256"
} >"$data/pg_hba.conf"
echo "include 'keystead_test.conf'" >>"$data/postgresql.conf"
write_conf() { # port
    {
        echo "port = $1"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$sock'"
        echo "max_connections = 200"
        echo "fsync = off"
        echo "synchronous_commit = off"
        echo "full_page_writes = off"
        echo "password_encryption = 'scram-sha-256'"
        echo "log_min_messages = warning"
        if [[ $tls == 1 ]]; then
            echo "ssl = on"
            echo "ssl_cert_file = '$tlsdir/server.crt'"
            echo "ssl_key_file = '$tlsdir/server.key'"
        fi
    } >"$data/keystead_test.conf"
    chown "$owner:" "$data/keystead_test.conf" "$data/pg_hba.conf"
}

# The helper the tests run to stop/start/restart the server; works for root (runs pg_ctl as
# the owner) and for the owner itself.
cat >"$dir/ctl" <<EOF
#!/bin/sh
# Controls the throwaway cluster of scripts/test-postgres.sh (deleted with it).
# Usage: $dir/ctl start|stop|restart|status [pg_ctl options, e.g. -m immediate]
set -eu
run() {
    cd "$dir"
    if [ "\$(id -u)" = 0 ] && [ "$owner" != root ]; then
        exec runuser -u "$owner" -- "\$@"
    fi
    exec "\$@"
}
cmd=\${1:-}
if [ \$# -gt 0 ]; then shift; fi
case \$cmd in
    start) run "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -s start "\$@" ;;
    stop) run "$PGBIN/pg_ctl" -D "$data" -w -t 60 -s -m fast stop "\$@" ;;
    restart) run "$PGBIN/pg_ctl" -D "$data" -l "$log" -w -t 60 -s -m fast restart "\$@" ;;
    status) run "$PGBIN/pg_ctl" -D "$data" status "\$@" ;;
    *) echo "usage: \$0 start|stop|restart|status [pg_ctl options]" >&2; exit 2 ;;
esac
EOF
chmod 0755 "$dir/ctl"

# --- start on a random free port, retrying when another process holds it --------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for attempt in 1 2 3 4 5 6 7 8; do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    port_busy "$p" && continue
    write_conf "$p"
    if "$dir/ctl" start >"$dir/pg_ctl.log" 2>&1; then
        port=$p
        break
    fi
    if grep -q -E 'could not (bind|create any TCP/IP sockets)|Address already in use' "$log"; then
        echo "$me: port $p was taken, trying another ($attempt)" >&2
        : >"$log"
        continue
    fi
    fail_start "the PostgreSQL server did not start"
done
[[ -n "$port" ]] || fail_start "found no free port for the PostgreSQL server after 8 tries"

# Our own psql calls ignore the caller's libpq variables (PGSSLMODE, PGOPTIONS, ...).
psql_clean() {
    env -u PGHOST -u PGHOSTADDR -u PGPORT -u PGUSER -u PGPASSWORD -u PGPASSFILE -u PGDATABASE \
        -u PGSERVICE -u PGSERVICEFILE -u PGOPTIONS -u PGSSLMODE -u PGSSLROOTCERT -u PGREQUIRESSL \
        -u PGTARGETSESSIONATTRS -u PGGSSENCMODE PGCONNECT_TIMEOUT=10 "$PGBIN/psql" -X "$@"
}

# --- roles and database -----------------------------------------------------------------------
psql_clean -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d postgres \
    >"$dir/setup.log" 2>&1 <<EOF || { cat "$dir/setup.log" >&2; fail_start "could not create the test role and database"; }
ALTER ROLE postgres PASSWORD '$admin_pw';
CREATE ROLE keystead LOGIN PASSWORD '$app_pw';
CREATE DATABASE keystead_test OWNER keystead;
EOF

export KEYSTEAD_TEST_PG_URL="postgres://keystead:$app_pw@127.0.0.1:$port/keystead_test"
export KEYSTEAD_TEST_PG_ADMIN_URL="postgres://postgres:$admin_pw@127.0.0.1:$port/postgres"
export KEYSTEAD_TEST_PG_CTL="$dir/ctl"
export KEYSTEAD_TEST_PG_DATA="$data"
export KEYSTEAD_TEST_PG_LOG="$log"
# Without --tls, variables inherited from the caller must not point the TLS tests elsewhere.
unset KEYSTEAD_TEST_PG_TLS_URL KEYSTEAD_TEST_PG_CA KEYSTEAD_TEST_PG_WRONG_CA
mode=""
if [[ $tls == 1 ]]; then
    export KEYSTEAD_TEST_PG_CA="$tlsdir/ca.crt"
    export KEYSTEAD_TEST_PG_WRONG_CA="$tlsdir/wrong-ca.crt"
    export KEYSTEAD_TEST_PG_TLS_URL="postgres://keystead:$app_pw@localhost:$port/keystead_test?sslmode=verify-full&sslrootcert=$KEYSTEAD_TEST_PG_CA"
    mode=", TLS: $(mask "$KEYSTEAD_TEST_PG_TLS_URL")"
fi

# Prove the URL works over TCP with SCRAM before handing it over.
psql_clean -q -At -c 'select 1' "$KEYSTEAD_TEST_PG_URL" >/dev/null 2>"$dir/setup.log" \
    || { cat "$dir/setup.log" >&2; fail_start "the test URL does not connect"; }
if [[ $tls == 1 ]]; then
    psql_clean -q -At -c 'select 1' "$KEYSTEAD_TEST_PG_TLS_URL" >/dev/null 2>"$dir/setup.log" \
        || { cat "$dir/setup.log" >&2; fail_start "the TLS test URL does not connect"; }
fi

version=$("$PGBIN/postgres" --version | awk '{ print $3 }')
echo "$me: PostgreSQL $version at $(mask "$KEYSTEAD_TEST_PG_URL")$mode; ready in $(secs "$t1" "$(now)") s$installed" >&2

# --- run the command --------------------------------------------------------------------------
set +e
"$@"
rc=$?
set -e
exit "$rc"

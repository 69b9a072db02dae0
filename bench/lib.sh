# Shared helpers for bench/*.sh (sourced, not run): clean-up of what a script
# started, Debian packages, the wharf build, and reading a process's CPU time and
# memory from /proc. Proxy configurations are in proxies.sh.
#
# Source selection (every script):
#   default            build the working tree of this repository
#   --rev REV          build a committed revision instead (git archive REV into a
#                      temp dir): numbers for a known commit while the tree is being edited
# Target directory: $CARGO_TARGET_DIR if set, else <repo>/target/bench (kept
# apart from target/ so a benchmark never waits on, or invalidates, other builds).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_ROOT/target/bench}
export CARGO_INCREMENTAL=0
PATH=$PATH:/usr/sbin:/sbin

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# Processes to end at exit, in reverse order of start.
BENCH_PIDS=()
BENCH_CLEANUPS=()
bench_cleanup() {
    local rc=$?
    set +e
    local i
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${BENCH_PIDS[i]}" 2>/dev/null
    done
    for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
        bench_wait_gone "${BENCH_PIDS[i]}" 50 || kill -KILL "${BENCH_PIDS[i]}" 2>/dev/null
    done
    for ((i = ${#BENCH_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${BENCH_CLEANUPS[i]}"
    done
    exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_wait_gone PID TENTHS: wait up to TENTHS/10 s for PID to exit (reaps it).
bench_wait_gone() {
    local pid=$1 n=${2:-50} st
    while ((n-- > 0)); do
        st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || true
        if [[ -z $st || $st == Z ]]; then
            wait "$pid" 2>/dev/null || true
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# bench_stop PID: SIGTERM one process we started, wait for it, forget it.
bench_stop() {
    local pid=$1 keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    bench_wait_gone "$pid" 100 || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${BENCH_PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    BENCH_PIDS=("${keep[@]+"${keep[@]}"}")
}

# bench_source ARGS...: sets SRC (the tree to build) and SRC_DESC from --rev.
bench_source() {
    SRC=$REPO_ROOT
    REV=""
    while (($#)); do
        case $1 in
            --rev) REV=${2:?--rev needs a revision}; shift 2 ;;
            --rev=*) REV=${1#--rev=}; shift ;;
            *) shift ;;
        esac
    done
    if [[ -n $REV ]]; then
        local sha
        sha=$(git -C "$REPO_ROOT" rev-parse --verify "$REV^{commit}") || die "unknown revision $REV"
        SRC=$(mktemp -d /tmp/wharf-bench-src.XXXXXX)
        BENCH_CLEANUPS+=("rm -rf '$SRC'")
        git -C "$REPO_ROOT" archive "$sha" | tar -x -C "$SRC"
        SRC_DESC="commit ${sha:0:12} ($(git -C "$REPO_ROOT" log -1 --format=%s "$sha" | cut -c1-60))"
    else
        local sha dirty=""
        sha=$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
        [[ -z $(git -C "$REPO_ROOT" status --porcelain -- src demo Cargo.toml Cargo.lock 2>/dev/null) ]] ||
            dirty=" + uncommitted changes"
        SRC_DESC="working tree at $sha$dirty"
    fi
}

# bench_apt PKG...: install Debian packages that are missing, quietly, without
# starting their services.
bench_apt() {
    (($#)) || return 0
    [[ $(id -u) == 0 ]] || die "missing $*; run as root or: apt-get install $*"
    say "installing $* (apt-get)…"
    local made_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
    } || rc=$?
    [[ -z $made_policy ]] || rm -f /usr/sbin/policy-rc.d
    ((rc == 0)) || die "apt-get install $* failed"
}

# bench_port_free PORT: true if nothing listens on 127.0.0.1:PORT.
bench_port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# bench_wait_http URL [HOST] [TENTHS]: wait for a 200 from URL (sending
# WRK_HEADER too when set, so a pool behind basic auth answers 200).
bench_wait_http() {
    local url=$1 host=${2:-} n=${3:-100} code
    local extra=()
    [[ -n ${WRK_HEADER:-} ]] && extra=(-H "$WRK_HEADER")
    while ((n-- > 0)); do
        if [[ -n $host ]]; then
            code=$(curl -s -o /dev/null -m 1 -H "Host: $host" "${extra[@]}" -w '%{http_code}' "$url" || true)
        else
            code=$(curl -s -o /dev/null -m 1 "${extra[@]}" -w '%{http_code}' "$url" || true)
        fi
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

bench_machine() {
    printf '%s, %s cores (%s), %s GiB RAM, load average %s\n' \
        "$(date -u +%Y-%m-%d)" "$(nproc)" \
        "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
        "$(awk '/MemTotal/ {printf "%.0f", $2/1048576}' /proc/meminfo)" \
        "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_busy_pct: % of all CPUs busy over the next second (everything on the
# machine: run it while nothing of ours is working).
bench_busy_pct() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x, " "); split(b, y, " ")
        busy = y[1] - x[1]; idle = y[2] - x[2]
        printf "%d\n", (busy + idle) ? 100 * busy / (busy + idle) : 0
    }'
}

# bench_wait_idle MAX_SECONDS: wait until the machine is quiet (< 10% busy over
# a second), for at most MAX_SECONDS; prints the last busy %. Other work on a
# 2-core machine skews every number, so the tables show this value.
bench_wait_idle() {
    local max=$1 start=$SECONDS pct
    while :; do
        pct=$(bench_busy_pct)
        if ((pct < 10 || SECONDS - start >= max)); then
            echo "$pct"
            return
        fi
    done
}

# bench_need CMD[:PACKAGE]...: install the Debian packages of missing commands.
bench_need() {
    local missing=() spec
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || missing+=("${spec#*:}")
    done
    bench_apt "${missing[@]+"${missing[@]}"}"
}

# bench_build PACKAGE...: `cargo build --release` of the workspace packages from
# $SRC (see bench_source) into $CARGO_TARGET_DIR.
bench_build() {
    local p args=()
    for p in "$@"; do args+=(-p "$p"); done
    say "building $* (release) from $SRC_DESC…"
    (cd "$SRC" && cargo build --release --quiet "${args[@]}") || die "cargo build failed"
}

# --- a process's resources, from /proc --------------------------------------
# A "process" below is a PID and its children (nginx: master + workers); the
# figures are summed over them. /proc/PID/stat's utime and stime cover all of a
# process's threads, including threads that have exited.
BENCH_HZ=$(getconf CLK_TCK)

bench_pids() { echo "$1" $(pgrep -P "$1" || true); }

# bench_status_kb PID FIELD: a /proc/PID/status field (kB) summed over the
# process and its children. VmRSS: resident now; VmHWM: peak resident.
bench_status_kb() {
    local p sum=0 v
    for p in $(bench_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
bench_rss_kb() { bench_status_kb "$1" VmRSS; }

# bench_cpu_ticks PID [user|sys]: CPU time used so far (clock ticks, $BENCH_HZ
# per second): user + system, or one of them.
bench_cpu_ticks() {
    local p sum=0 v expr='$12 + $13'
    [[ ${2:-} != sys ]] || expr='$13'
    [[ ${2:-} != user ]] || expr='$12'
    for p in $(bench_pids "$1"); do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk "{print $expr}" || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# bench_ctx_switches PID: context switches so far (voluntary + involuntary),
# summed over the live threads of the process and its children.
bench_ctx_switches() {
    local p
    for p in $(bench_pids "$1"); do cat "/proc/$p/task/"*/status 2>/dev/null; done |
        awk '/^(non)?voluntary_ctxt_switches:/ { n += $2 } END { print n + 0 }'
}

bench_threads() {
    local p n=0
    for p in $(bench_pids "$1"); do n=$((n + $(ls "/proc/$p/task" | wc -l))); done
    echo "$n"
}

# Machine-wide CPU ticks: "busy total steal" (user + nice + system; irq/softirq
# time, where loopback TCP is mostly accounted, is charged to no process, so it
# is left out of "busy"; steal: time the hypervisor gave to other guests).
bench_machine_ticks() { awk '/^cpu / { print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $9 }' /proc/stat; }

# bench_pct PART TOTAL: PART as a whole percentage of TOTAL.
bench_pct() { awk -v p="$1" -v t="$2" 'BEGIN { printf "%d\n", t ? 100 * p / t : 0 }'; }

# CPU ticks of this shell's reaped children (wrk), from `times`.
bench_children_ticks() {
    times | awk -v hz="$BENCH_HZ" 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] }
        printf "%d\n", s * hz
    }'
}

# bench_us_per TICKS N: CPU microseconds per unit (request) for TICKS over N.
bench_us_per() {
    awk -v t="$1" -v hz="$BENCH_HZ" -v n="$2" 'BEGIN { printf "%.1f\n", n ? t / hz * 1e6 / n : 0 }'
}

# bench_other_pct BUSY_TICKS TOTAL_TICKS OURS_TICKS: % of the machine used by
# anything but our processes during a run (other sessions' builds and tests).
bench_other_pct() {
    awk -v busy="$1" -v total="$2" -v ours="$3" \
        'BEGIN { o = total ? 100 * (busy - ours) / total : 0; printf "%d\n", o < 0 ? 0 : o }'
}

# bench_parse_wrk FILE: wrk's --latency output → "rps p50_ms p99_ms errors requests"
# (errors: non-2xx/3xx responses + socket errors of every kind).
bench_parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return v
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /requests in/ { reqs = $1 }
        /^Requests\/sec:/ { rps = $2 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        /Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
        END { printf "%.0f %.2f %.2f %d %d\n", rps, p50, p99, err, reqs }
    ' "$1"
}

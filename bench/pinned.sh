#!/usr/bin/env bash
# wharf's CPU per request next to nginx and HAProxy, one core each (issue 9's
# setup): two nginx backends answering `return 200`, the proxy under test alone
# on CPU 0, the load (wrk -t1) and the backends on CPU 1, rounds interleaved in
# rotated order. See bench/README.md.
#
#   bench/pinned.sh [--modes http,idle,tls] [--rounds 3] [--duration 8s]
#                   [--warmup 2s] [--connections 64] [--proxies "nginx haproxy wharf"]
#                   [--idle-conns 10000] [--idle-wait 15] [--tls-key ec|rsa]
#                   [--raw FILE] [--perf DIR] [--syscalls] [--deferred] [--rev REV]
#
# modes: http = keep-alive and `Connection: close` (default); idle = RSS with
# 10,000 idle client connections; tls = the http table over TLS.
# --perf DIR: after the rounds, one more run of each proxy per mode under
# `perf record` (not in the table): flat profiles by symbol and by DSO in DIR.
# --syscalls: after the rounds, one more run of each proxy per mode under
# `perf stat` on the syscall tracepoints (not in the table): system calls per
# request, and how many reads and accepts found nothing (EAGAIN).
# --deferred: nginx and HAProxy defer accepts too (`listen … deferred`,
# `bind … defer-accept`: TCP_DEFER_ACCEPT), as wharf does by default
# (`--defer-accept 1s`); without it they run their own defaults (off).
# WHARF_BIN=PATH measures that binary instead of building one (--rev);
# WHARF_ARGS="flags" and WHARF_ENV="VAR=value …" are added to wharf A's command;
# WHARF_BIN_B, WHARF_ARGS_B, WHARF_ENV_B (any of them) add a column "wharf B":
# another build, or the same binary with other flags or environment.
# BENCH_PORT_BASE moves the ports (default 18200).
# Prints tables; asserts nothing. Everything listens on 127.0.0.1 and ends at exit.

BENCH_SELF=$0
source "$(dirname "$0")/lib.sh"
source "$BENCH_DIR/proxies.sh"

MODES=http
ROUNDS=3
DURATION=8s
WARMUP=2s
CONNS=64
PROXIES="nginx haproxy wharf"
IDLE_CONNS=10000
IDLE_WAIT=15
TLS_KEY=ec
RAW=""
PERF_DIR=""
SYSCALLS=0
PORT_BASE=${BENCH_PORT_BASE:-18200}
args=("$@")
while (($#)); do
    case $1 in
        --modes) MODES=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --proxies) PROXIES=$2; shift 2 ;;
        --idle-conns) IDLE_CONNS=$2; shift 2 ;;
        --idle-wait) IDLE_WAIT=$2; shift 2 ;;
        --tls-key) TLS_KEY=$2; shift 2 ;;
        --raw) RAW=$2; shift 2 ;;
        --perf) PERF_DIR=$2; shift 2 ;;
        --syscalls) SYSCALLS=1; shift ;;
        --deferred) export BENCH_DEFERRED=1; shift ;;
        --rev) shift 2 ;;
        --rev=*) shift ;;
        -h | --help) sed -n '2,/^$/p' "$BENCH_SELF" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
MODES=${MODES//,/ }
for m in $MODES; do [[ $m == http || $m == idle || $m == tls ]] || die "unknown mode $m (http, idle, tls)"; done
[[ $TLS_KEY == ec || $TLS_KEY == rsa ]] || die "--tls-key is ec or rsa"
for p in $PROXIES; do [[ $p == nginx || $p == haproxy || $p == wharf ]] || die "unknown proxy $p"; done

bench_need nginx haproxy wrk curl taskset:util-linux python3
[[ $MODES != *tls* ]] || bench_need openssl cc:gcc
[[ -z $PERF_DIR ]] || { bench_need perf:linux-perf && mkdir -p "$PERF_DIR"; }
if ((SYSCALLS)); then
    bench_need perf:linux-perf
    perf stat -e syscalls:sys_enter_read -- true >/dev/null 2>&1 ||
        die "--syscalls: perf cannot open the syscall tracepoints (needs root or perf_event_paranoid <= -1 and a readable tracefs)"
fi
(($(nproc) >= 2)) || die "needs 2 CPUs (proxy on CPU 0, load on CPU 1)"
ulimit -n "$(ulimit -Hn)" # the idle run's 10,000 connections, on both sides

# --- the wharf binaries ----------------------------------------------------
if [[ -n ${WHARF_BIN:-} ]]; then
    [[ -x $WHARF_BIN ]] || die "WHARF_BIN=$WHARF_BIN is not an executable"
    WHARF_A=$WHARF_BIN
    DESC_A="$WHARF_BIN ($(stat -c %y "$WHARF_BIN" | cut -d. -f1))"
else
    bench_source "${args[@]+"${args[@]}"}"
    bench_build wharf
    WHARF_A=$CARGO_TARGET_DIR/release/wharf
    DESC_A=$SRC_DESC
fi
[[ $PROXIES != *wharf* ]] || [[ -z ${WHARF_BIN_B:-}${WHARF_ARGS_B:-}${WHARF_ENV_B:-} ]] || PROXIES+=" wharfb"
WHARF_B=${WHARF_BIN_B:-$WHARF_A}
[[ -x $WHARF_B ]] || die "WHARF_BIN_B=$WHARF_B is not an executable"
DESC_B="$WHARF_B ($(stat -c %y "$WHARF_B" | cut -d. -f1))"
[[ -n ${WHARF_BIN_B:-} ]] || DESC_B="the binary of wharf A"
DESC_A+="${WHARF_ARGS:+, flags: $WHARF_ARGS}${WHARF_ENV:+, environment: $WHARF_ENV}"
DESC_B+="${WHARF_ARGS_B:+, flags: $WHARF_ARGS_B}${WHARF_ENV_B:+, environment: $WHARF_ENV_B}"
# The TLS flags issue 7 will add (override if they land under other names).
WHARF_TLS_ARGS=${WHARF_TLS_ARGS:---tls-listen @ADDR@ --tls-dir @DIR@}

TMP=$(mktemp -d /tmp/wharf-bench-pinned.XXXXXX)
BENCH_CLEANUPS+=("rm -rf '$TMP'")
RESULTS=$TMP/results
: >"$RESULTS"
: >"$TMP/idle"

# --- ports and backends ------------------------------------------------------
B1=$((PORT_BASE + 1)) B2=$((PORT_BASE + 2))
BACKENDS="127.0.0.1:$B1 127.0.0.1:$B2"
declare -A PORT=([nginx]=$((PORT_BASE + 10)) [haproxy]=$((PORT_BASE + 20)) [wharf]=$((PORT_BASE + 30)) [wharfb]=$((PORT_BASE + 40)))
for p in $B1 $B2 "${PORT[@]}" $((PORT_BASE + 31)) $((PORT_BASE + 32)) $((PORT_BASE + 41)) $((PORT_BASE + 42)); do
    bench_port_free "$p" || die "127.0.0.1:$p is taken; set BENCH_PORT_BASE to another base"
done
BACKEND_PIDS=()
for p in $B1 $B2; do
    bench_nginx_backend_conf "$TMP/backend-$p" "127.0.0.1:$p"
    bench_spawn "$TMP/backend-$p/out.log" 1 nginx -e "$TMP/backend-$p/error.log" -p "$TMP/backend-$p" -c "$TMP/backend-$p/nginx.conf"
    BACKEND_PIDS+=("$SPAWNED")
    bench_wait_up "$SPAWNED" "http://127.0.0.1:$p/" "$TMP/backend-$p/error.log" "backend nginx on $p"
done

# --- TLS: one self-signed certificate for every proxy ----------------------
TLS_DIR=$TMP/tls
if [[ $MODES == *tls* ]]; then
    mkdir -p "$TLS_DIR"
    if [[ $TLS_KEY == ec ]]; then key=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); else key=(-newkey rsa:2048); fi
    openssl req -x509 "${key[@]}" -nodes -days 7 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$TLS_DIR/localhost.key" -out "$TLS_DIR/localhost.crt" 2>/dev/null || die "openssl req failed"
    cat "$TLS_DIR/localhost.crt" "$TLS_DIR/localhost.key" >"$TMP/haproxy.pem"
    # wrk keeps a connection's TLS session across its reconnects and resumes it
    # (SSL_clear after a clean SSL_shutdown). Without SSL_shutdown, OpenSSL drops
    # the session: each connection then makes a full handshake.
    printf 'typedef struct ssl_st SSL;\nint SSL_shutdown(SSL *s) { (void)s; return 1; }\n' >"$TMP/noresume.c"
    cc -shared -fPIC -O2 -o "$TMP/noresume.so" "$TMP/noresume.c" || die "cc failed"
fi

# wharf_cmd NAME TLS MAXCONN: sets CMD (argv) for wharf A or B; false if this
# binary cannot do TLS.
wharf_cmd() {
    local name=$1 tls=$2 maxconn=$3 bin=$WHARF_A extra=${WHARF_ARGS:-} vars=${WHARF_ENV:-} base=${PORT[$1]} t
    if [[ $name == wharfb ]]; then bin=$WHARF_B extra=${WHARF_ARGS_B:-} vars=${WHARF_ENV_B:-}; fi
    CMD=(env -u WHARF_LOG $vars "$bin" --provider none --static "web=${BACKENDS// /,}"
        --listen "127.0.0.1:$base" --admin-listen "127.0.0.1:$((base + 1))")
    # One worker: --workers 1 once wharf has it; until then the pinning makes
    # tokio size its runtime to one worker.
    ! bench_wharf_has "$bin" --workers || CMD+=(--workers 1)
    # The connection cap nginx and HAProxy are given: wharf's own default
    # (half the descriptor limit) refused 32 of the idle run's 10,000
    # where the hard limit is 20,000.
    # (Unless WHARF_ARGS gives its own: clap refuses a repeated flag.)
    [[ " $extra " == *" --max-connections"* ]] || ! bench_wharf_has "$bin" --max-connections \
        || CMD+=(--max-connections "$maxconn")
    if ((tls)); then
        t=${WHARF_TLS_ARGS%% *}
        bench_wharf_has "$bin" "$t" || return 1
        t=${WHARF_TLS_ARGS//@ADDR@/127.0.0.1:$((base + 2))}
        CMD+=(${t//@DIR@/$TLS_DIR})
    fi
    CMD+=($extra)
}

# start_proxy NAME TLS MAXCONN: on CPU 0 → PROXY_PID, PROXY_URL; false when
# this proxy cannot serve that mode (wharf without TLS).
start_proxy() {
    local name=$1 tls=$2 maxconn=$3 port=${PORT[$1]} log=$TMP/$1.log scheme=http
    ((tls)) && scheme=https
    case $name in
        nginx)
            local crt=() && ((tls)) && crt=("$TLS_DIR/localhost.crt" "$TLS_DIR/localhost.key")
            bench_nginx_proxy_conf "$TMP/nginx" "127.0.0.1:$port" 1 "$maxconn" "$BACKENDS" "${crt[@]+"${crt[@]}"}"
            CMD=(nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf")
            ;;
        haproxy)
            local pem="" && ((tls)) && pem=$TMP/haproxy.pem
            bench_haproxy_conf "$TMP/haproxy.cfg" "127.0.0.1:$port" 1 "$maxconn" "$BACKENDS" $pem
            CMD=(haproxy -db -f "$TMP/haproxy.cfg")
            ;;
        wharf | wharfb)
            wharf_cmd "$name" "$tls" "$maxconn" || return 1
            ((tls)) && port=$((port + 2))
            ;;
    esac
    bench_spawn "$log" 0 "${CMD[@]}"
    PROXY_PID=$SPAWNED
    PROXY_URL=$scheme://localhost:$port/
    bench_wait_up "$PROXY_PID" "$PROXY_URL" "$log" "$name"
}

# CPU ticks of the backends and of the kernel's ksoftirqd threads (loopback
# TCP is partly processed there): ours, not "other" load.
backend_ticks() {
    local p sum=0
    for p in "${BACKEND_PIDS[@]}" $(pgrep '^ksoftirqd/' || true); do sum=$((sum + $(bench_cpu_ticks "$p"))); done
    echo "$sum"
}

# run_cell MODE ROUND NAME [perf|syscalls]: one measurement → a line of
# $RESULTS; with "perf", a profile in $PERF_DIR instead; with "syscalls",
# lines of $TMP/syscalls.
run_cell() {
    local mode=$1 round=$2 name=$3 profile=${4:-} tls=0 hdr=() pre=()
    case $mode in
        ka) ;;
        close) hdr=(-H "Connection: close") ;;
        tls-ka) tls=1 ;;
        tls-full) tls=1 hdr=(-H "Connection: close") pre=(env LD_PRELOAD="$TMP/noresume.so") ;;
        tls-resume) tls=1 hdr=(-H "Connection: close") ;;
    esac
    if ! start_proxy "$name" "$tls" 4096; then
        echo "$mode $round $name skip" >>"$RESULTS"
        printf '  %-10s %-7s round %s: skipped (no %s in its --help)\n' "$mode" "$name" "$round" "${WHARF_TLS_ARGS%% *}" >&2
        return
    fi
    local wrk=(taskset -c 1 "${pre[@]+"${pre[@]}"}" wrk -t1 -c"$CONNS" "${hdr[@]+"${hdr[@]}"}")
    bench_wait_idle "$IDLE_WAIT" >/dev/null
    "${wrk[@]}" -d"$WARMUP" "$PROXY_URL" >/dev/null
    if [[ $profile == perf ]]; then
        profile_cell "$mode-$name"
        return
    elif [[ $profile == syscalls ]]; then
        syscalls_cell "$mode" "$name"
        return
    fi
    local t0 t1 u0 u1 c0 c1 m0 m1 b0 b1 w0 w1 e0 e1
    read -r -a m0 < <(bench_machine_ticks)
    b0=$(backend_ticks) w0=$(bench_children_ticks) u0=$(bench_cpu_ticks "$PROXY_PID" user)
    c0=$(bench_ctx_switches "$PROXY_PID")
    t0=$(bench_cpu_ticks "$PROXY_PID") e0=$EPOCHREALTIME
    "${wrk[@]}" -d"$DURATION" --latency "$PROXY_URL" >"$TMP/wrk.out"
    e1=$EPOCHREALTIME t1=$(bench_cpu_ticks "$PROXY_PID") u1=$(bench_cpu_ticks "$PROXY_PID" user)
    c1=$(bench_ctx_switches "$PROXY_PID") w1=$(bench_children_ticks) b1=$(backend_ticks)
    read -r -a m1 < <(bench_machine_ticks)
    local hwm cpu_us user_us cpu_pct other csw steal
    hwm=$(bench_status_kb "$PROXY_PID" VmHWM)
    read -r rps p50 p99 errs reqs < <(bench_parse_wrk "$TMP/wrk.out")
    cpu_us=$(bench_us_per $((t1 - t0)) "$reqs")
    user_us=$(bench_us_per $((u1 - u0)) "$reqs")
    csw=$(awk -v c=$((c1 - c0)) -v n="$reqs" 'BEGIN { printf "%.3f", n ? c / n : 0 }')
    cpu_pct=$(awk -v t=$((t1 - t0)) -v hz="$BENCH_HZ" -v a="$e0" -v b="$e1" 'BEGIN { printf "%d", 100 * t / hz / (b - a) }')
    other=$(bench_other_pct $((m1[0] - m0[0])) $((m1[1] - m0[1])) $((t1 - t0 + b1 - b0 + w1 - w0)))
    steal=$(bench_pct $((m1[2] - m0[2])) $((m1[1] - m0[1])))
    echo "$mode $round $name $rps $p50 $p99 $errs $hwm $cpu_us $cpu_pct $other $user_us $csw $steal" >>"$RESULTS"
    printf '  %-10s %-7s round %s: %6s req/s  %6s µs/req (user %s)  CPU %3s%%  p50 %5s  p99 %6s ms  errors %s  peak RSS %s kB  other %s%%  steal %s%%\n' \
        "$mode" "$name" "$round" "$rps" "$cpu_us" "$user_us" "$cpu_pct" "$p50" "$p99" "$errs" "$hwm" "$other" "$steal" >&2
    bench_stop "$PROXY_PID"
}

# profile_cell TAG: perf record the proxy (cpu-clock samples, no call graph)
# during one load run; flat profiles by symbol and by DSO in $PERF_DIR/TAG.*.
profile_cell() {
    local data=$PERF_DIR/$1.data
    local pids
    pids=$(bench_pids "$PROXY_PID")
    taskset -c 1 perf record -q -e cpu-clock -F 1999 -p "${pids// /,}" -o "$data" -- sleep "$DURATION" 2>/dev/null &
    local perf_pid=$!
    "${wrk[@]}" -d"$DURATION" "$PROXY_URL" >"$PERF_DIR/$1.wrk"
    wait "$perf_pid" || true
    bench_stop "$PROXY_PID"
    perf report -i "$data" --stdio --no-children --percent-limit 0.3 --sort sym 2>/dev/null | grep -v '^$' >"$PERF_DIR/$1.sym.txt"
    perf report -i "$data" --stdio --no-children --sort dso 2>/dev/null | grep -v '^$' >"$PERF_DIR/$1.dso.txt"
    say "  profile $1: $PERF_DIR/$1.sym.txt, $PERF_DIR/$1.dso.txt"
}

# syscalls_cell MODE NAME: system calls per request during one load run →
# lines "MODE NAME SYSCALL PER-REQUEST" of $TMP/syscalls. Tracepoints, not
# strace: strace slows the proxy so much that a client's request is always
# there before the proxy reads (a first read that fails with EAGAIN at full
# speed never showed under strace; issue 9).
syscalls_cell() {
    local mode=$1 name=$2 out=$TMP/syscalls-$1-$2.csv pids reqs
    pids=$(bench_pids "$PROXY_PID")
    # perf counts for exactly as long as wrk runs (wrk is its command).
    taskset -c 1 perf stat -x, -o "$out" -p "${pids// /,}" -e 'syscalls:sys_enter_*' \
        -e syscalls:sys_exit_recvfrom --filter 'ret == -11' -e syscalls:sys_exit_read --filter 'ret == -11' \
        -e syscalls:sys_exit_accept4 --filter 'ret == -11' \
        -- "${wrk[@]}" -d"$DURATION" "$PROXY_URL" >"$TMP/wrk-syscalls.out" 2>"$TMP/perf-$mode-$name.err" || true
    bench_stop "$PROXY_PID"
    if ! [[ -s $out && -s $TMP/wrk-syscalls.out ]]; then
        say "  syscalls $mode $name: perf stat failed: $(tail -n 2 "$TMP/perf-$mode-$name.err" | tr '\n' ' ')"
        return
    fi
    read -r _ _ _ _ reqs < <(bench_parse_wrk "$TMP/wrk-syscalls.out")
    awk -F, -v cell="$mode $name" -v n="$reqs" '$1 + 0 > 0 && n > 0 {
        s = $3
        if (sub(/^syscalls:sys_exit_/, "", s)) s = s "(EAGAIN)"
        else sub(/^syscalls:sys_enter_/, "", s)
        printf "%s %s %.3f\n", cell, s, $1 / n
    }' "$out" >>"$TMP/syscalls"
    say "  syscalls $mode $name: $(awk -v c="$mode $name" '$1 " " $2 == c { printf "%s %s  ", $3, $4 }' "$TMP/syscalls")"
}

# run_idle NAME VARIANT: the idle-connections run → a line of $TMP/idle.
run_idle() {
    local name=$1 variant=$2 line
    start_proxy "$name" 0 $((IDLE_CONNS + 1024))
    line=$(taskset -c 1 python3 "$BENCH_DIR/idle.py" --port "${PORT[$name]}" --pids "$(bench_pids "$PROXY_PID")" \
        --conns "$IDLE_CONNS" --variant "$variant") || say "  (idle.py reported errors)"
    echo "$variant $name $line" >>"$TMP/idle"
    say "  idle $variant $name: $line"
    bench_stop "$PROXY_PID"
}

header() {
    echo "wharf A: $DESC_A"
    [[ $PROXIES != *wharfb* ]] || echo "wharf B: $DESC_B"
    echo "machine: $(bench_machine)"
    if [[ ${BENCH_DEFERRED:-0} == 1 ]]; then
        echo "accepts deferred: nginx and HAProxy (--deferred), and wharf unless its flags say --defer-accept 0"
    else
        echo "accepts deferred: wharf only (its default --defer-accept 1s; nginx and HAProxy with --deferred)"
    fi
    echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}'), $(openssl version | cut -d' ' -f1-2)"
}
say "$(header)"

PROXY_LIST=($PROXIES)
CELLS=()
[[ $MODES != *http* ]] || CELLS+=(ka close)
[[ $MODES != *tls* ]] || CELLS+=(tls-ka tls-full tls-resume)
if ((${#CELLS[@]})); then
    say "wrk -t1 -c$CONNS, $ROUNDS round(s) of $DURATION after a $WARMUP warm-up; proxy on CPU 0, wrk and 2 nginx backends on CPU 1"
    for ((r = 1; r <= ROUNDS; r++)); do
        for cell in "${CELLS[@]}"; do
            for ((i = 0; i < ${#PROXY_LIST[@]}; i++)); do
                run_cell "$cell" "$r" "${PROXY_LIST[(i + r - 1) % ${#PROXY_LIST[@]}]}"
            done
        done
    done
fi
if [[ -n $PERF_DIR ]]; then
    for cell in "${CELLS[@]}"; do
        for name in "${PROXY_LIST[@]}"; do run_cell "$cell" perf "$name" perf; done
    done
fi
: >"$TMP/syscalls"
if ((SYSCALLS)); then
    for cell in "${CELLS[@]}"; do
        for name in "${PROXY_LIST[@]}"; do run_cell "$cell" syscalls "$name" syscalls; done
    done
fi
if [[ $MODES == *idle* ]]; then
    say "idle: $IDLE_CONNS connections per proxy, opened 200 at a time by one Python asyncio client on CPU 1"
    for variant in request silent partial; do
        for name in "${PROXY_LIST[@]}"; do run_idle "$name" "$variant"; done
    done
fi
[[ -z $RAW ]] || cat "$RESULTS" "$TMP/idle" >"$RAW"

# --- tables ----------------------------------------------------------------------
echo
header
if ((${#CELLS[@]})); then
    echo "load: wrk -t1 -c$CONNS -d$DURATION --latency (after a $WARMUP warm-up), GET / → 2 nginx backends (return 200, empty body), $ROUNDS rotated round(s)"
    echo
    awk -v proxies="$PROXIES" -v cells="${CELLS[*]}" -v tlsflag="${WHARF_TLS_ARGS%% *}" -f "$BENCH_DIR/pinned-table.awk" "$RESULTS"
    echo
    echo "Each figure is the median of the rounds, except peak RSS (the highest) and errors (the sum)."
    echo "CPU µs/request = (utime + stime of the proxy's processes, from /proc/PID/stat, after − before the"
    echo "measured run) ÷ requests; CPU % = that CPU time ÷ the run's wall time (100 = its core saturated)."
    echo "other% = the machine's CPU used by anything but the proxy, wrk, the backends and ksoftirqd (noise)."
    echo "steal% = the machine's CPU time the hypervisor gave to other guests (a shared host: above a few %, compare ratios only)."
fi
if [[ $MODES == *idle* ]]; then
    echo
    awk -v proxies="$PROXIES" -v conns="$IDLE_CONNS" -f "$BENCH_DIR/pinned-table.awk" "$TMP/idle"
fi
if [[ -s $TMP/syscalls ]]; then
    echo
    echo "System calls per request (one more run of each proxy under \`perf stat\` on the syscall tracepoints, not in the table above):"
    echo
    awk -v proxies="$PROXIES" '
        { key = $1 " " $3; v[key, $2] = $4; ran[$1, $2] = 1; if (!(key in seen)) { seen[key] = 1; keys[++n] = key }
          if ($3 !~ /EAGAIN/) { all[$1, $2] += $4; if (!($1 in mseen)) { mseen[$1] = 1; modes[++nm] = $1 } } }
        function label(m) { return m == "ka" ? "keep-alive" : m }
        END {
            np = split(proxies, p, " ")
            head = "| |"; rule = "| --- |"
            for (i = 1; i <= np; i++) { head = head " " (p[i] == "wharfb" ? "wharf B" : p[i]) " |"; rule = rule " ---: |" }
            print head; print rule
            for (k = 1; k <= n; k++) {
                split(keys[k], kk, " ")
                line = "| " label(kk[1]) ": `" kk[2] "` |"
                for (i = 1; i <= np; i++)
                    line = line " " (!((kk[1], p[i]) in ran) ? "–" : ((keys[k], p[i]) in v ? v[keys[k], p[i]] : "0")) " |"
                print line
            }
            for (m = 1; m <= nm; m++) {
                line = "| " label(modes[m]) ": all (without the EAGAIN rows) |"
                for (i = 1; i <= np; i++)
                    line = line " " (((modes[m], p[i]) in ran) ? sprintf("%.2f", all[modes[m], p[i]]) : "–") " |"
                print line
            }
        }' "$TMP/syscalls"
fi

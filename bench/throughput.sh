#!/usr/bin/env bash
# Throughput of wharf next to nginx and HAProxy, all proxying the same
# wharf-demo backends on loopback, measured with wrk. See bench/README.md.
#
#   bench/throughput.sh [--rev REV] [--duration 10s] [--connections 64]
#                       [--rounds 1] [--backends 3] [--only shared|pinned]
#                       [--proxies "direct wharf nginx haproxy"] [--idle-wait 60]
#
# Before each measurement it waits (at most --idle-wait seconds) for the machine
# to be quiet, and reports how busy it was ("other%": other sessions' builds and
# tests skew a 2-core machine).
#
# Everything listens on 127.0.0.1 only; every process started here is ended at exit.

BENCH_SELF=$0
source "$(dirname "$0")/lib.sh"

DURATION=10s
WARMUP=2s
CONNS=64
THREADS=2
ROUNDS=1
NBACKENDS=3
VARIANTS="shared pinned"
PROXIES="direct wharf nginx haproxy"
IDLE_WAIT=60
PORT_BASE=${BENCH_PORT_BASE:-18100}
args=("$@")
while (($#)); do
    case $1 in
        --duration) DURATION=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --backends) NBACKENDS=$2; shift 2 ;;
        --only) VARIANTS=$2; shift 2 ;;
        --proxies) PROXIES=$2; shift 2 ;;
        --idle-wait) IDLE_WAIT=$2; shift 2 ;;
        --rev) shift 2 ;;
        --rev=*) shift ;;
        -h | --help) sed -n '2,10p' "$BENCH_SELF" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
bench_source "${args[@]+"${args[@]}"}"

# --- tools ---------------------------------------------------------------
missing=()
command -v nginx >/dev/null || missing+=(nginx)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v taskset >/dev/null || missing+=(util-linux)
[[ $PROXIES != *wharf-jemalloc* || -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]] || missing+=(libjemalloc2)
bench_apt "${missing[@]+"${missing[@]}"}"
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

say "building wharf and wharf-demo (release) from $SRC_DESC…"
(cd "$SRC" && cargo build --release --quiet -p wharf -p wharf-demo) || die "cargo build failed"
WHARF=$CARGO_TARGET_DIR/release/wharf
DEMO=$CARGO_TARGET_DIR/release/wharf-demo

TMP=$(mktemp -d /tmp/wharf-bench-tp.XXXXXX)
BENCH_CLEANUPS+=("rm -rf '$TMP'")

BACKEND_PORTS=()
for ((i = 1; i <= NBACKENDS; i++)); do BACKEND_PORTS+=($((PORT_BASE + i))); done
WHARF_PORT=$((PORT_BASE + 80))
WHARF_ADMIN=$((PORT_BASE + 81))
NGINX_PORT=$((PORT_BASE + 82))
HAPROXY_PORT=$((PORT_BASE + 83))
for p in "${BACKEND_PORTS[@]}" $WHARF_PORT $WHARF_ADMIN $NGINX_PORT $HAPROXY_PORT; do
    bench_port_free "$p" || die "127.0.0.1:$p is taken; set BENCH_PORT_BASE to another base"
done

# --- configs -------------------------------------------------------------
# All three proxies do the same work per request: HTTP/1.1 keep-alive to the
# client and to the backends, round robin, X-Forwarded-For/-Proto/-Host set, no logs.
nginx_conf() { # WORKERS
    local servers="" p
    for p in "${BACKEND_PORTS[@]}"; do servers+="        server 127.0.0.1:$p;"$'\n'; done
    cat >"$TMP/nginx.conf" <<EOF
daemon off;
worker_processes $1;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-body;
    proxy_temp_path $TMP/nginx-proxy;
    fastcgi_temp_path $TMP/nginx-fastcgi;
    uwsgi_temp_path $TMP/nginx-uwsgi;
    scgi_temp_path $TMP/nginx-scgi;
    upstream web {
$servers        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
}
EOF
}

haproxy_conf() { # THREADS
    local servers="" p i=0
    for p in "${BACKEND_PORTS[@]}"; do servers+="    server s$((++i)) 127.0.0.1:$p"$'\n'; done
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread $1
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option forwardfor
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend be
backend be
    balance roundrobin
$servers
EOF
}

# --- processes -----------------------------------------------------------
BACKEND_PIDS=()
start_backends() { # CPUSET ("" = any)
    local p pin=()
    [[ -z $1 ]] || pin=(taskset -c "$1")
    for p in "${BACKEND_PORTS[@]}"; do
        "${pin[@]+"${pin[@]}"}" "$DEMO" --listen "127.0.0.1:$p" --name "b$p" >>"$TMP/demo.log" 2>&1 &
        BACKEND_PIDS+=($!)
        BENCH_PIDS+=($!)
    done
    for p in "${BACKEND_PORTS[@]}"; do
        bench_wait_http "http://127.0.0.1:$p/health" || die "backend on $p did not start: $(tail -3 "$TMP/demo.log")"
    done
}
stop_backends() {
    local pid
    for pid in "${BACKEND_PIDS[@]}"; do bench_stop "$pid"; done
    BACKEND_PIDS=()
}

# start_proxy NAME CPUSET WORKERS → sets PROXY_PID and PROXY_URL
start_proxy() {
    local name=$1 pin=() statics
    [[ -z $2 ]] || pin=(taskset -c "$2")
    statics=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}")
    case $name in
        direct)
            PROXY_PID=${BACKEND_PIDS[0]}
            PROXY_URL=http://127.0.0.1:${BACKEND_PORTS[0]}/
            return
            ;;
        wharf | wharf-1w | wharf-jemalloc)
            local env=()
            [[ $name != wharf-1w ]] || env=(TOKIO_WORKER_THREADS=1)
            [[ $name != wharf-jemalloc ]] || env=(LD_PRELOAD="$JEMALLOC")
            env "${env[@]+"${env[@]}"}" "${pin[@]+"${pin[@]}"}" "$WHARF" --provider none --static "web=${statics%,}" \
                --listen "127.0.0.1:$WHARF_PORT" --admin-listen "127.0.0.1:$WHARF_ADMIN" \
                >>"$TMP/$name.log" 2>&1 &
            PROXY_URL=http://127.0.0.1:$WHARF_PORT/
            ;;
        nginx)
            nginx_conf "$3"
            "${pin[@]+"${pin[@]}"}" nginx -e "$TMP/nginx-error.log" -p "$TMP" -c "$TMP/nginx.conf" \
                >>"$TMP/nginx.log" 2>&1 &
            PROXY_URL=http://127.0.0.1:$NGINX_PORT/
            ;;
        haproxy)
            haproxy_conf "$3"
            "${pin[@]+"${pin[@]}"}" haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
            PROXY_URL=http://127.0.0.1:$HAPROXY_PORT/
            ;;
    esac
    PROXY_PID=$!
    BENCH_PIDS+=("$PROXY_PID")
    local n=100
    until bench_wait_http "$PROXY_URL" "" 1; do
        if ! kill -0 "$PROXY_PID" 2>/dev/null || ((--n == 0)); then
            say "$name did not answer 200 on $PROXY_URL; its log:"
            cat "$TMP/$name.log" >&2
            [[ $name != nginx ]] || cat "$TMP/nginx-error.log" >&2
            die "$name did not start"
        fi
    done
}

# The proxy's processes: the pid and its children (nginx workers).
proxy_pids() { echo "$1" $(pgrep -P "$1" || true); }
# Sum of VmRSS (kB) over the proxy's processes.
proxy_rss_kb() {
    local p sum=0 v
    for p in $(proxy_pids "$1"); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
# CPU time (clock ticks) used so far by the proxy's processes and their
# threads: user + system, or only system with a second argument "sys".
proxy_cpu_ticks() {
    local p sum=0 v expr='$12 + $13'
    [[ ${2:-} != sys ]] || expr='$13'
    for p in $(proxy_pids "$1"); do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk "{print $expr}" || echo 0)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}
thread_count() {
    local p n=0
    for p in $(proxy_pids "$1"); do n=$((n + $(ls "/proc/$p/task" | wc -l))); done
    echo "$n"
}

# wrk's output → "rps p50_ms p99_ms errors requests"
parse_wrk() {
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

RESULTS=$TMP/results
: >"$RESULTS"
HZ=$(getconf CLK_TCK)

# Machine-wide CPU ticks: "busy total".
# (user + nice + system; irq/softirq time, where loopback TCP is mostly
# accounted, is charged to no process, so it is left out of "busy".)
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# CPU ticks of reaped children (wrk), from the shell's `times`.
children_ticks() {
    times | awk -v hz="$HZ" 'NR == 2 {
        s = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); s += a[1] * 60 + a[2] }
        printf "%d\n", s * hz
    }'
}
# The backends' CPU ticks, plus the kernel's ksoftirqd threads': at these
# packet rates loopback TCP is partly processed there, on our behalf.
backend_ticks() {
    local p sum=0
    for p in "${BACKEND_PIDS[@]}" $(pgrep '^ksoftirqd/' || true); do
        sum=$((sum + $(proxy_cpu_ticks "$p")))
    done
    echo "$sum"
}

run_one() { # VARIANT ROUND NAME
    local variant=$1 round=$2 name=$3 proxy_cpu="" wrk_pin=() workers=2
    if [[ $variant == pinned ]]; then
        proxy_cpu=0
        wrk_pin=(taskset -c 1)
        workers=1
    fi
    start_proxy "$name" "$proxy_cpu" "$workers"
    bench_wait_idle "$IDLE_WAIT" >/dev/null
    "${wrk_pin[@]+"${wrk_pin[@]}"}" wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "$PROXY_URL" >/dev/null
    local t0 t1 m0 m1 b0 b1 w0 w1 s0 s1
    read -r -a m0 < <(machine_ticks)
    t0=$(proxy_cpu_ticks "$PROXY_PID")
    s0=$(proxy_cpu_ticks "$PROXY_PID" sys)
    b0=$(backend_ticks)
    w0=$(children_ticks)
    "${wrk_pin[@]+"${wrk_pin[@]}"}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$PROXY_URL" >"$TMP/wrk.out"
    w1=$(children_ticks)
    b1=$(backend_ticks)
    t1=$(proxy_cpu_ticks "$PROXY_PID")
    s1=$(proxy_cpu_ticks "$PROXY_PID" sys)
    read -r -a m1 < <(machine_ticks)
    local rss threads
    rss=$(proxy_rss_kb "$PROXY_PID")
    threads=$(thread_count "$PROXY_PID")
    read -r rps p50 p99 errs reqs < <(parse_wrk "$TMP/wrk.out")
    # Proxy CPU in microseconds per request; CPU used by anything but the
    # proxy, the backends and wrk, as % of the machine during the run.
    local cpu_us sys_us other ours
    cpu_us=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
    sys_us=$(awk -v t=$((s1 - s0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", n ? t / hz * 1e6 / n : 0 }')
    ours=$(((b1 - b0) + (w1 - w0)))
    [[ $name == direct ]] || ours=$((ours + t1 - t0))
    other=$(awk -v busy=$((m1[0] - m0[0])) -v total=$((m1[1] - m0[1])) -v ours="$ours" \
        'BEGIN { o = total ? 100 * (busy - ours) / total : 0; printf "%d", o < 0 ? 0 : o }')
    printf '%s %s %s %s %s %s %s %s %s %s %s %s\n' "$variant" "$round" "$name" "$rps" "$p50" "$p99" "$errs" "$rss" "$cpu_us" "$threads" "$other" "$sys_us" >>"$RESULTS"
    printf '  %-7s %-14s round %s: %8s req/s  p50 %6s ms  p99 %6s ms  errors %s  RSS %s kB  CPU %s µs/req (sys %s)  other %s%%\n' \
        "$variant" "$name" "$round" "$rps" "$p50" "$p99" "$errs" "$rss" "$cpu_us" "$sys_us" "$other" >&2
    [[ $name == direct ]] || bench_stop "$PROXY_PID"
}

say "wharf: $SRC_DESC"
say "$(bench_machine)"
say "nginx $(nginx -v 2>&1 | sed 's/.*\///'), HAProxy $(haproxy -v | awk 'NR==1 {print $3}'), $(wrk -v 2>&1 | awk 'NR==1 {print $1, $2}')"
say "wrk -t$THREADS -c$CONNS -d$DURATION (after a $WARMUP warm-up), $NBACKENDS wharf-demo backends, $ROUNDS round(s)"
for variant in $VARIANTS; do
    case $variant in
        shared) start_backends "" ;;
        pinned) start_backends 1 ;;
        *) die "unknown variant $variant" ;;
    esac
    for ((r = 1; r <= ROUNDS; r++)); do
        for name in $PROXIES; do run_one "$variant" "$r" "$name"; done
    done
    stop_backends
done

# --- table: per variant and proxy, the round with the median req/s ---------
echo
echo "wharf: $SRC_DESC"
echo "machine: $(bench_machine)"
echo "load: wrk -t$THREADS -c$CONNS -d$DURATION --latency, GET / (123-byte body), $NBACKENDS wharf-demo backends"
echo "each row: the round with the median req/s among the clean rounds (other% <= 5) of $ROUNDS; clean = clean rounds / rounds"
for variant in $VARIANTS; do
    echo
    if [[ $variant == shared ]]; then
        echo "shared: no pinning, proxy + wrk + backends share both cores (nginx worker_processes auto, HAProxy nbthread 2, wharf default runtime)"
    else
        echo "pinned: proxy on CPU 0; wrk and backends on CPU 1 (nginx worker_processes 1, HAProxy nbthread 1, wharf's runtime sizes itself to 1 worker)"
    fi
    printf '| %-14s | %10s | %8s | %8s | %6s | %9s | %17s | %7s | %6s | %5s |\n' proxy "req/s" "p50 ms" "p99 ms" errors "RSS MiB" "CPU µs/req (sys)" threads "other%" clean
    printf '| %-14s | %10s | %8s | %8s | %6s | %9s | %17s | %7s | %6s | %5s |\n' -------------- ---------: -------: -------: -----: --------: ----------------: ------: -----: ----:
    for name in $PROXIES; do
        # The median (by req/s) of the clean rounds (other% <= 5), else of all rounds.
        awk -v v="$variant" -v n="$name" '$1 == v && $3 == n' "$RESULTS" | sort -k4,4n |
            awk -v name="$name" '{ all[NR] = $0; if ($11 <= 5 || name == "direct") clean[++c] = $0 } END {
                if (c) { pick = clean[int((c + 1) / 2)]; note = c "/" NR }
                else { pick = all[int((NR + 1) / 2)]; note = "0/" NR }
                split(pick, f, " ")
                printf "| %-14s | %10s | %8s | %8s | %6s | %9.1f | %17s | %7s | %6s | %5s |\n", name, f[4], f[5], f[6], f[7], f[8] / 1024, f[9] " (" f[12] ")", f[10], f[11], note
            }'
    done
done
echo
echo "RSS: VmRSS after the run, summed over the proxy's processes (nginx: master + workers)."
echo "CPU µs/req: user+system CPU of the proxy's processes during the measured run / requests (system part in parentheses)."
echo "other%: CPU used during the run by anything but the proxy, the backends, wrk and ksoftirqd, in % of the machine"
echo "        (other sessions' builds and tests, Docker); a round above 5 is not clean."
echo "direct: wrk against one backend, no proxy (its RSS/CPU columns are that backend's). Its other% stays"
echo "        at 10-20 % on an idle machine (CPU accounting at > 80k req/s), so all its rounds count as clean."

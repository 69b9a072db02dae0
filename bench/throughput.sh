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
source "$BENCH_DIR/proxies.sh"

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
        -h | --help) sed -n '2,/^$/p' "$BENCH_SELF" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
bench_source "${args[@]+"${args[@]}"}"

# --- tools ---------------------------------------------------------------
bench_need nginx haproxy wrk curl taskset:util-linux
[[ $PROXIES != *wharf-jemalloc* || -e /usr/lib/x86_64-linux-gnu/libjemalloc.so.2 ]] || bench_apt libjemalloc2
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2

bench_build wharf wharf-demo
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

# --- processes -----------------------------------------------------------
BACKEND_PIDS=()
start_backends() { # CPUSET ("" = any)
    local p
    for p in "${BACKEND_PORTS[@]}"; do
        bench_spawn "$TMP/demo.log" "$1" "$DEMO" --listen "127.0.0.1:$p" --name "b$p"
        BACKEND_PIDS+=("$SPAWNED")
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
    local name=$1 cpus=$2 statics backends log=$TMP/$1.log
    statics=$(printf '127.0.0.1:%s,' "${BACKEND_PORTS[@]}")
    backends=${statics//,/ }
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
            bench_spawn "$log" "$cpus" env -u WHARF_LOG "${env[@]+"${env[@]}"}" "$WHARF" --provider none \
                --static "web=${statics%,}" --listen "127.0.0.1:$WHARF_PORT" --admin-listen "127.0.0.1:$WHARF_ADMIN"
            PROXY_URL=http://127.0.0.1:$WHARF_PORT/
            ;;
        nginx)
            bench_nginx_proxy_conf "$TMP/nginx" "127.0.0.1:$NGINX_PORT" "$3" 4096 "$backends"
            bench_spawn "$log" "$cpus" nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
            PROXY_URL=http://127.0.0.1:$NGINX_PORT/
            ;;
        haproxy)
            bench_haproxy_conf "$TMP/haproxy.cfg" "127.0.0.1:$HAPROXY_PORT" "$3" 4096 "$backends"
            bench_spawn "$log" "$cpus" haproxy -db -f "$TMP/haproxy.cfg"
            PROXY_URL=http://127.0.0.1:$HAPROXY_PORT/
            ;;
    esac
    PROXY_PID=$SPAWNED
    bench_wait_up "$PROXY_PID" "$PROXY_URL" "$log" "$name"
}

RESULTS=$TMP/results
: >"$RESULTS"

# The backends' CPU ticks, plus the kernel's ksoftirqd threads': at these
# packet rates loopback TCP is partly processed there, on our behalf.
backend_ticks() {
    local p sum=0
    for p in "${BACKEND_PIDS[@]}" $(pgrep '^ksoftirqd/' || true); do
        sum=$((sum + $(bench_cpu_ticks "$p")))
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
    read -r -a m0 < <(bench_machine_ticks)
    t0=$(bench_cpu_ticks "$PROXY_PID")
    s0=$(bench_cpu_ticks "$PROXY_PID" sys)
    b0=$(backend_ticks)
    w0=$(bench_children_ticks)
    "${wrk_pin[@]+"${wrk_pin[@]}"}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$PROXY_URL" >"$TMP/wrk.out"
    w1=$(bench_children_ticks)
    b1=$(backend_ticks)
    t1=$(bench_cpu_ticks "$PROXY_PID")
    s1=$(bench_cpu_ticks "$PROXY_PID" sys)
    read -r -a m1 < <(bench_machine_ticks)
    local rss threads
    rss=$(bench_rss_kb "$PROXY_PID")
    threads=$(bench_threads "$PROXY_PID")
    read -r rps p50 p99 errs reqs < <(bench_parse_wrk "$TMP/wrk.out")
    # Proxy CPU in microseconds per request; CPU used by anything but the
    # proxy, the backends and wrk, as % of the machine during the run.
    local cpu_us sys_us other ours
    cpu_us=$(bench_us_per $((t1 - t0)) "$reqs")
    sys_us=$(bench_us_per $((s1 - s0)) "$reqs")
    ours=$(((b1 - b0) + (w1 - w0)))
    [[ $name == direct ]] || ours=$((ours + t1 - t0))
    other=$(bench_other_pct $((m1[0] - m0[0])) $((m1[1] - m0[1])) "$ours")
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

#!/usr/bin/env bash
# wharf's user-space instructions per request, counted by valgrind's callgrind:
# a number that does not move with the load on a shared machine (pinned.sh's
# CPU µs do), so an optimisation of the request path can be judged by one run.
# The kernel's share (syscalls, TCP) is not counted: pinned.sh measures it.
#
#   bench/instructions.sh [--requests 20000] [--connections 8] [--backends 1] [--keep DIR] [--nginx]
#
# WHARF_BIN=PATH measures that binary (default: build the working tree);
# WHARF_BIN_B=PATH adds a second column. Each is run with `--workers 1` in front
# of one nginx backend answering `return 200` (--backends N: N of them, in one
# pool; pinned.sh has 2, and with more than one a GET's head is copied for a
# replay); wrk sends keep-alive requests, then `Connection: close` ones.
# Counting starts after a warm-up (`callgrind_control --zero`) and stops at
# `--dump`, so start-up is excluded.
# Prints a table; asserts nothing. WRK_HEADER='Name: value' adds a request
# header; wharf's own WHARF_* variables pass through, so a policy is measured
# with e.g. WHARF_STATIC_LABEL='web:wharf.compress=true' (see labels.md).
# --nginx adds a column: nginx as the proxy (pinned.sh's config, one
# process), counted the same way: the user-space gap in instructions.
# CALLGRIND_ARGS='--cache-sim=yes' adds callgrind's simulated cache misses
# (I1/D1/LL, per function in the kept output; the table stays instructions).
# --keep DIR keeps each run's callgrind output (DIR/<binary>.<mode>.out) for
# `callgrind_annotate --inclusive=yes`; build with CARGO_PROFILE_RELEASE_STRIP=false
# for function names.

BENCH_SELF=$0
source "$(dirname "$0")/lib.sh"
source "$BENCH_DIR/proxies.sh"

REQUESTS=20000
BACKENDS=1
CONNS=8
KEEP=
NGINX=0
while (($#)); do
    case $1 in
        --requests) REQUESTS=$2; shift 2 ;;
        --connections) CONNS=$2; shift 2 ;;
        --backends)
            [[ $2 =~ ^[1-9][0-9]*$ ]] || die "--backends wants a count of 1 or more, not '$2'"
            BACKENDS=$2; shift 2 ;;
        --keep) KEEP=$2; mkdir -p "$KEEP"; shift 2 ;;
        --nginx) NGINX=1; shift ;;
        -h | --help) sed -n '2,/^$/p' "$BENCH_SELF" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

bench_need valgrind:valgrind nginx:nginx wrk:wrk
if [[ -n ${WHARF_BIN:-} ]]; then
    A=$WHARF_BIN
else
    bench_source
    bench_build wharf
    A=$CARGO_TARGET_DIR/release/wharf
fi
B=${WHARF_BIN_B:-}

WORK=$(mktemp -d /tmp/wharf-instr.XXXXXX)
BENCH_CLEANUPS+=("rm -rf $WORK")
LISTEN=127.0.0.1:18290
POOL=
for ((i = 0; i < BACKENDS; i++)); do
    # 18291, then 18293 and up (18292 is wharf's admin port).
    BACKEND=127.0.0.1:$((i == 0 ? 18291 : 18292 + i))
    bench_nginx_backend_conf "$WORK/backend$i" "$BACKEND"
    bench_spawn "$WORK/backend$i.log" "" nginx -c "$WORK/backend$i/nginx.conf"
    bench_wait_up "$SPAWNED" "http://$BACKEND/" "$WORK/backend$i.log" "nginx backend"
    POOL+=${POOL:+,}$BACKEND
done

# count BIN MODE: user-space instructions per request (one line: Ir requests).
count() {
    local bin=$1 mode=$2 out="$WORK/cg.$RANDOM" pid total done_
    local header=() workers=() log=$WORK/wharf.log name=wharf
    [[ $mode == close ]] && header=(-H "Connection: close")
    [[ -n ${WRK_HEADER:-} ]] && header+=(-H "$WRK_HEADER")
    if [[ $bin == nginx ]]; then
        # pinned.sh's nginx proxy config, one process (no master) so that
        # callgrind follows the worker itself.
        bench_nginx_proxy_conf "$WORK/nginx" "$LISTEN" 1 1024 "${POOL//,/ }"
        sed -i 's/^daemon off;/daemon off;\nmaster_process off;/' "$WORK/nginx/nginx.conf"
        grep -q '^master_process off;' "$WORK/nginx/nginx.conf" ||
            die "could not turn nginx's master process off in $WORK/nginx/nginx.conf"
        log=$WORK/nginx/error.log name=nginx
        valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$out.%p" nginx -e "$log" \
            -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.log" 2>&1 &
    else
        ! bench_wharf_has "$bin" --workers || workers=(--workers 1)
        valgrind --tool=callgrind ${CALLGRIND_ARGS:-} --callgrind-out-file="$out.%p" "$bin" --provider none \
            --static "web=$POOL" --listen "$LISTEN" --admin-listen 127.0.0.1:18292 \
            "${workers[@]}" >"$WORK/wharf.log" 2>&1 &
    fi
    pid=$!
    # Stopped however the script ends (a failed start used to leave it running).
    BENCH_CLEANUPS+=("kill $pid 2>/dev/null || true")
    bench_wait_up "$pid" "http://$LISTEN/" "$log" "$name"
    # Warm-up: connections, pools and allocator caches in their steady state.
    wrk -t1 -c"$CONNS" -d2s "${header[@]}" "http://$LISTEN/" >/dev/null
    callgrind_control --zero "$pid" >/dev/null 2>&1 || die "callgrind_control --zero $pid failed"
    # wrk runs for a time, not a count: run until about REQUESTS are done.
    done_=0
    while ((done_ < REQUESTS)); do
        local r
        r=$(wrk -t1 -c"$CONNS" -d2s "${header[@]}" "http://$LISTEN/" | awk '/requests in/ { print $1 }')
        done_=$((done_ + r))
    done
    callgrind_control --dump "$pid" >/dev/null 2>&1 || die "callgrind_control --dump $pid failed"
    sleep 0.5
    kill "$pid"; wait "$pid" 2>/dev/null || true
    total=$(cat "$out".* 2>/dev/null | awk '/^summary:/ { s += $2 } END { print s + 0 }')
    # The dump made at the end of the counted requests (not the shut-down).
    [[ -z $KEEP ]] || cp "$(ls "$out".*.1 2>/dev/null | head -1)" "$KEEP/$(basename "$bin").$mode.out" || true
    rm -f "$out".*
    echo "$total $done_"
}

declare -A IPR
BINS=("$A" ${B:+"$B"})
! ((NGINX)) || BINS+=(nginx)
for bin in "${BINS[@]}"; do
    for mode in keepalive close; do
        read -r ir n < <(count "$bin" "$mode")
        IPR[$bin.$mode]=$(awk -v i="$ir" -v n="$n" 'BEGIN { printf "%.0f", i / n }')
        say "$(basename "$bin") $mode: $ir instructions / $n requests"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '\n| user-space instructions per request | wharf A |%s%s\n' "${B:+ wharf B | B ÷ A |}" \
    "$( ((NGINX)) && echo ' nginx | A ÷ nginx |')"
printf '| --- | ---: |%s%s\n' "${B:+ ---: | ---: |}" "$( ((NGINX)) && echo ' ---: | ---: |')"
for mode in keepalive close; do
    a=${IPR[$A.$mode]}
    row="| $mode | $a |"
    [[ -z $B ]] || row+=" ${IPR[$B.$mode]} | $(ratio "${IPR[$B.$mode]}" "$a") |"
    ! ((NGINX)) || row+=" ${IPR[nginx.$mode]} | $(ratio "$a" "${IPR[nginx.$mode]}") |"
    echo "$row"
done
printf '\nA = %s%s\n' "$A" "${B:+, B = $B}"

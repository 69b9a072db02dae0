#!/usr/bin/env bash
# What Docker discovery costs as the host grows (issue 9), against the real
# daemon: wharf's CPU per *unrelated* event with 10 / 300 / 1000 running
# unlabelled containers; a burst of 200 labelled containers (last `docker run`
# → all routed); `docker rm -f` of 100 labelled containers (Docker's kill event
# → backend no longer ready, p50/p99/max); the cost of a re-list with one
# container carrying 2,000 unknown `wharf.*` labels. See bench/README.md.
#
#   bench/discovery.sh [--rev REV] [--sizes 10,300,1000] [--burst 200] [--kill 100]
#                      [--labels 2000] [--cycles 12] [--keep-logs DIR]
#
# WHARF_BIN=PATH measures that (host) binary instead of building one;
# WHARF_BIN_B=PATH adds a second wharf (e.g. a build of an older commit),
# watching the same daemon at the same time, so both see the same events on the
# same host. WHARF_NAME / WHARF_NAME_B name the columns. --keep-logs DIR copies
# each wharf's log there at exit (BENCH_WHARF_LOG=filter sets wharf's WHARF_LOG;
# by default it is unset, so a debug filter in the shell does not skew the
# CPU). DEMO_BIN=PATH: a static wharf-demo to put in the containers' image instead of building one
# (e.g. the tests' target/static/x86_64-unknown-linux-gnu/debug/wharf-demo). Needs ~3 GiB of free
# memory per 1,000 containers (stops filling earlier, and says so, below 4 GiB).
# Creates only containers named wharf-disco-<run>-* and labelled
# wharf-disco.run=<run>, a network and an image of its own; removes them all at
# exit (Ctrl-C included). Prints; asserts nothing.

BENCH_SELF=$0
source "$(dirname "$0")/lib.sh"

SIZES=10,300,1000
BURST=200
KILL=100
LABELS=2000
CYCLES=12
KEEP_LOGS=
PORT_BASE=${BENCH_PORT_BASE:-18100}
TARGET=x86_64-unknown-linux-gnu
args=("$@")
while (($#)); do
    case $1 in
        --sizes) SIZES=$2; shift 2 ;;
        --burst) BURST=$2; shift 2 ;;
        --kill) KILL=$2; shift 2 ;;
        --labels) LABELS=$2; shift 2 ;;
        --cycles) CYCLES=$2; shift 2 ;;
        --keep-logs) KEEP_LOGS=$2; mkdir -p "$KEEP_LOGS" || die "cannot create $KEEP_LOGS"; shift 2 ;;
        --rev) shift 2 ;;
        --rev=*) shift ;;
        -h | --help) sed -n '2,/^$/p' "$BENCH_SELF" | sed -n 's/^# \{0,1\}//p'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
bench_source "${args[@]+"${args[@]}"}"

command -v docker >/dev/null || die "needs the docker CLI and a running Docker Engine"
docker info --format '{{.ServerVersion}}' >/dev/null 2>&1 || die "Docker Engine not reachable (docker info failed)"
command -v python3 >/dev/null || bench_apt python3
command -v curl >/dev/null || bench_apt curl

RUN_ID=$$-$(date +%s)
PREFIX=wharf-disco-$RUN_ID
RUN_LABEL=wharf-disco.run=$RUN_ID
NET=$PREFIX-net
IMAGE=wharf-disco/demo:$RUN_ID
TMP=$(mktemp -d /tmp/wharf-bench-discovery.XXXXXX)
BENCH_CLEANUPS+=("rm -rf '$TMP'")
# Clean-ups run in reverse order: the logs are copied before $TMP goes.
[[ -z $KEEP_LOGS ]] || BENCH_CLEANUPS+=("cp '$TMP'/*.log '$KEEP_LOGS'/ 2>/dev/null || true")

if [[ -n ${DEMO_BIN:-} ]]; then
    DEMO=$DEMO_BIN
else
    say "building static wharf-demo (release, $TARGET) from $SRC_DESC…"
    (cd "$SRC" && RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --quiet --target "$TARGET" -p wharf-demo) || die "cargo build failed"
    DEMO=$CARGO_TARGET_DIR/$TARGET/release/wharf-demo
fi
if [[ -n ${WHARF_BIN:-} ]]; then
    A=$WHARF_BIN
else
    bench_build wharf
    A=$CARGO_TARGET_DIR/release/wharf
fi
B=${WHARF_BIN_B:-}

mkdir -p "$TMP/ctx"
cp "$DEMO" "$TMP/ctx/wharf-demo"
printf 'FROM scratch\nCOPY wharf-demo /wharf-demo\nEXPOSE 80\nENTRYPOINT ["/wharf-demo"]\n' >"$TMP/ctx/Dockerfile"
BENCH_CLEANUPS+=("docker image rm -f '$IMAGE' >/dev/null 2>&1")
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$TMP/ctx" >/dev/null 2>"$TMP/build.err" ||
    { cat "$TMP/build.err" >&2; die "docker build $IMAGE failed"; }

BENCH_CLEANUPS+=("docker network rm '$NET' >/dev/null 2>&1")
# Containers go before the network and the image (clean-ups run in reverse order).
BENCH_CLEANUPS+=("docker ps -aq --filter 'label=$RUN_LABEL' | xargs -r docker rm -f >/dev/null 2>&1")
docker network create "$NET" >/dev/null

wharf_args=()
start_wharf() { # NAME BIN PORT
    local port=$3 admin=$(($3 + 1))
    bench_port_free "$port" && bench_port_free "$admin" ||
        die "127.0.0.1:$port or :$admin is taken; set BENCH_PORT_BASE to another base"
    env -u WHARF_LOG ${BENCH_WHARF_LOG:+WHARF_LOG="$BENCH_WHARF_LOG"} "$2" --provider docker --network "$NET" \
        --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" >"$TMP/$1.log" 2>&1 &
    BENCH_PIDS+=("$!")
    wharf_args+=(--wharf "$1:$!:$admin" --log "$1=$TMP/$1.log")
    bench_wait_http "http://127.0.0.1:$admin/api/state" "" 300 || { cat "$TMP/$1.log" >&2; die "wharf $1 did not start"; }
}
start_wharf "${WHARF_NAME:-wharf}" "$A" $((PORT_BASE + 70))
[[ -z $B ]] || start_wharf "${WHARF_NAME_B:-wharf B}" "$B" $((PORT_BASE + 72))

say "wharf: ${WHARF_NAME:-wharf} = $A${B:+, ${WHARF_NAME_B:-wharf B} = $B}"
say "$(bench_machine)"
python3 "$BENCH_DIR/discovery.py" "${wharf_args[@]}" --image "$IMAGE" --network "$NET" \
    --run-label "$RUN_LABEL" --prefix "$PREFIX" --sizes "$SIZES" --burst "$BURST" \
    --kill "$KILL" --labels "$LABELS" --cycles "$CYCLES" >"$TMP/out.md"
echo
echo "machine: $(bench_machine); Docker Engine $(docker info --format '{{.ServerVersion}}')"
echo "wharf: ${WHARF_NAME:-wharf} = $A${B:+; ${WHARF_NAME_B:-wharf B} = $B} (both watching the same daemon at once)"
echo
cat "$TMP/out.md"

#!/usr/bin/env bash
# How fast wharf picks up a newly labelled container and lets go of a stopped
# one, against the real Docker daemon; plus binary and image sizes.
# See bench/README.md.
#
#   bench/pickup.sh [--rev REV] [--runs 20] [--poll-interval-ms 0]
#
# Creates (and removes at exit): network wharf-bench-net, images
# wharf-bench/demo:latest and wharf-bench/wharf:latest, the demo containers.
# wharf runs on the host, listening on 127.0.0.1 only.

BENCH_SELF=$0
source "$(dirname "$0")/lib.sh"

RUNS=20
POLL_MS=0
PORT_BASE=${BENCH_PORT_BASE:-18100}
TARGET=x86_64-unknown-linux-gnu
NET=wharf-bench-net
DEMO_IMAGE=wharf-bench/demo:latest
WHARF_IMAGE=wharf-bench/wharf:latest
args=("$@")
while (($#)); do
    case $1 in
        --runs) RUNS=$2; shift 2 ;;
        --poll-interval-ms) POLL_MS=$2; shift 2 ;;
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
command -v strip >/dev/null || bench_apt binutils
command -v curl >/dev/null || bench_apt curl

WHARF_PORT=$((PORT_BASE + 90))
WHARF_ADMIN=$((PORT_BASE + 91))
for p in $WHARF_PORT $WHARF_ADMIN; do
    bench_port_free "$p" || die "127.0.0.1:$p is taken; set BENCH_PORT_BASE to another base"
done
docker network inspect "$NET" >/dev/null 2>&1 && die "network $NET exists (another run, or a leftover: docker network rm $NET)"

TMP=$(mktemp -d /tmp/wharf-bench-pickup.XXXXXX)
BENCH_CLEANUPS+=("rm -rf '$TMP'")
RUN_ID=$$-$(date +%s)
RUN_LABEL=wharf-bench.run=$RUN_ID

say "building static wharf and wharf-demo (release, $TARGET) from $SRC_DESC…"
(cd "$SRC" && RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --quiet --target "$TARGET" -p wharf -p wharf-demo) || die "cargo build failed"
BIN=$CARGO_TARGET_DIR/$TARGET/release
WHARF=$BIN/wharf

# --- sizes -----------------------------------------------------------------
strip -o "$TMP/wharf.stripped" "$WHARF"
strip -o "$TMP/wharf-demo.stripped" "$BIN/wharf-demo"
size_of() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB (%d bytes)", b / 1048576, b }'; }

# --- images (FROM scratch, like the tests build them: no registry needed) --
image_ctx() { # DIR BINARY DOCKERFILE
    mkdir -p "$1"
    cp "$2" "$1/"
    printf '%s\n' "$3" >"$1/Dockerfile"
}
image_ctx "$TMP/ctx-wharf" "$WHARF" 'FROM scratch
COPY wharf /wharf
ENV WHARF_LISTEN=0.0.0.0:80 WHARF_ADMIN_LISTEN=0.0.0.0:8081
EXPOSE 80 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/wharf", "healthcheck"]
ENTRYPOINT ["/wharf"]'
image_ctx "$TMP/ctx-demo" "$BIN/wharf-demo" 'FROM scratch
COPY wharf-demo /wharf-demo
EXPOSE 80
ENTRYPOINT ["/wharf-demo"]'
say "building images $WHARF_IMAGE and $DEMO_IMAGE…"
BENCH_CLEANUPS+=("docker image rm -f '$WHARF_IMAGE' '$DEMO_IMAGE' >/dev/null 2>&1")
for pair in "$WHARF_IMAGE:$TMP/ctx-wharf" "$DEMO_IMAGE:$TMP/ctx-demo"; do
    # (the legacy builder, which needs no registry, prints a deprecation notice on stderr)
    DOCKER_BUILDKIT=0 docker build -q -t "${pair%%:/*}" "/${pair#*:/}" >/dev/null 2>"$TMP/build.err" ||
        { cat "$TMP/build.err" >&2; die "docker build ${pair%%:/*} failed"; }
done

# --- network, wharf --------------------------------------------------------
BENCH_CLEANUPS+=("docker network rm '$NET' >/dev/null 2>&1")
# Containers go before the network (cleanups run in reverse order).
BENCH_CLEANUPS+=("docker ps -aq --filter 'label=$RUN_LABEL' | xargs -r docker rm -f >/dev/null 2>&1")
docker network create "$NET" >/dev/null

env -u WHARF_LOG "$WHARF" --provider docker --network "$NET" \
    --listen "127.0.0.1:$WHARF_PORT" --admin-listen "127.0.0.1:$WHARF_ADMIN" >"$TMP/wharf.log" 2>&1 &
WHARF_PID=$!
BENCH_PIDS+=("$WHARF_PID")
bench_wait_http "http://127.0.0.1:$WHARF_ADMIN/readyz" "" 300 || {
    cat "$TMP/wharf.log" >&2
    die "wharf did not get ready"
}
# One throw-away container first, so the demo image is warm in the page cache.
docker run --rm --label "$RUN_LABEL" --network "$NET" "$DEMO_IMAGE" --help >/dev/null 2>&1 || true

say "wharf: $SRC_DESC"
say "$(bench_machine)"
say "Docker Engine $(docker info --format '{{.ServerVersion}}'), $RUNS runs, poll interval ${POLL_MS} ms"
rc=0
python3 "$BENCH_DIR/pickup.py" --port "$WHARF_PORT" --admin "$WHARF_ADMIN" --runs "$RUNS" \
    --image "$DEMO_IMAGE" --network "$NET" --run-label "$RUN_LABEL" \
    --poll-interval-ms "$POLL_MS" >"$TMP/pickup.md" || rc=$?
wharf_rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$WHARF_PID/status")

echo
echo "wharf: $SRC_DESC"
echo "machine: $(bench_machine)"
echo "Docker Engine $(docker info --format '{{.ServerVersion}}'); wharf on the host (--network $NET), demo containers FROM scratch; poll interval ${POLL_MS} ms"
echo
cat "$TMP/pickup.md"
echo
echo "| size | |"
echo "| --- | ---: |"
echo "| wharf binary, static release, unstripped | $(mib "$(size_of "$WHARF")") |"
echo "| wharf binary, static release, stripped | $(mib "$(size_of "$TMP/wharf.stripped")") |"
echo "| wharf-demo binary, static release, unstripped / stripped | $(mib "$(size_of "$BIN/wharf-demo")") / $(mib "$(size_of "$TMP/wharf-demo.stripped")") |"
echo "| image $WHARF_IMAGE (FROM scratch + unstripped binary) | $(mib "$(docker image inspect --format '{{.Size}}' "$WHARF_IMAGE")") |"
echo "| image $DEMO_IMAGE | $(mib "$(docker image inspect --format '{{.Size}}' "$DEMO_IMAGE")") |"
echo "| wharf VmRSS after the runs | $(awk -v k="$wharf_rss" 'BEGIN { printf "%.1f MiB", k / 1024 }') |"
exit "$rc"

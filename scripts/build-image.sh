#!/bin/sh
# Build the wharf and wharf-demo images without pulling anything: static
# binaries from the local Rust toolchain, copied into FROM scratch images
# (what the multi-stage Dockerfile does, minus its rust builder image).
#
#   scripts/build-image.sh            # tags wharf:latest and wharf-demo:latest
#   WHARF_TAG=wharf:dev DEMO_TAG=wharf-demo:dev scripts/build-image.sh
#   PROFILE=debug scripts/build-image.sh   # faster build, bigger binary
set -eu
cd "$(dirname "$0")/.."
target="$(uname -m)-unknown-linux-gnu"
profile="${PROFILE:-release}"
dir="${CARGO_TARGET_DIR:-target}"
if [ "$profile" = release ]; then flag=--release; else flag=; fi
RUSTFLAGS='-C target-feature=+crt-static' cargo build $flag --locked --target "$target" -p wharf -p wharf-demo
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "$dir/$target/$profile/wharf" "$dir/$target/$profile/wharf-demo" "$ctx/"
# An empty /acme owned by wharf's user (WHARF_USER): a new named volume
# mounted there starts with that owner, so wharf can store certificates.
mkdir "$ctx/acme"
cat > "$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch AS demo
COPY wharf-demo /wharf-demo
EXPOSE 80
HEALTHCHECK --interval=10s --timeout=3s CMD ["/wharf-demo", "probe", "http://127.0.0.1:80/health"]
ENTRYPOINT ["/wharf-demo"]

# wharf starts as root and switches to nobody (WHARF_USER, uid/gid 65534)
# at once, keeping the Docker socket's group: see the Dockerfile.
FROM scratch AS wharf
COPY wharf /wharf
COPY --chown=65534:65534 acme /acme
ENV WHARF_USER=65534:65534 \
    WHARF_LISTEN=0.0.0.0:80 \
    WHARF_TLS_LISTEN=0.0.0.0:443 \
    WHARF_ADMIN_LISTEN=0.0.0.0:8081
EXPOSE 80 443 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/wharf", "healthcheck"]
ENTRYPOINT ["/wharf"]
DOCKERFILE
docker build -q -t "${DEMO_TAG:-wharf-demo:latest}" --target demo "$ctx"
docker build -q -t "${WHARF_TAG:-wharf:latest}" --target wharf "$ctx"
echo "built ${WHARF_TAG:-wharf:latest} and ${DEMO_TAG:-wharf-demo:latest}"

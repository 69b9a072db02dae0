# wharf: build from source, ship a static binary in an empty image.
#
#   docker build -t wharf .                    # the load balancer (default target)
#   docker build -t wharf-demo --target demo . # the demo/test backend
#
# The final images hold one static binary and nothing else (no shell, no libc).
# The test suite builds the same runtime stage from a locally built static binary,
# because it cannot pull this file's builder image.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN set -eux; \
    target="$(uname -m)-unknown-linux-gnu"; \
    RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target "$target" -p wharf -p wharf-demo; \
    mkdir -p /out/acme; \
    cp "target/$target/release/wharf" "target/$target/release/wharf-demo" /out/

# The demo backend (like traefik/whoami): echoes who answered and the request.
FROM scratch AS demo
COPY --from=build /out/wharf-demo /wharf-demo
EXPOSE 80
HEALTHCHECK --interval=10s --timeout=3s CMD ["/wharf-demo", "probe", "http://127.0.0.1:80/health"]
ENTRYPOINT ["/wharf-demo"]

# wharf itself. It starts as root, like nginx, and at once switches to
# nobody (WHARF_USER=65534:65534) keeping the Docker socket's group as its
# only supplementary group, so the plain
#   docker run -v /var/run/docker.sock:/var/run/docker.sock:ro wharf
# reads the root:docker 660 socket with no --group-add, and serves as
# uid 65534 with no capability (the kernel clears them on the switch).
# - ports 80/443: Docker >= 20.10 sets net.ipv4.ip_unprivileged_port_start=0
#   in every container's network namespace, so uid 65534 binds them (older
#   daemons: --sysctl net.ipv4.ip_unprivileged_port_start=0; with
#   --network host: listen on a port >= 1024, or -e WHARF_USER=0).
# - --cap-drop ALL needs --cap-add SETUID --cap-add SETGID for the switch
#   (else wharf warns and stays root); docker run --user 65534
#   --group-add <the socket's group> starts it unprivileged instead.
# - /acme (the ACME storage directory) is owned by 65534, so a new named
#   volume mounted there is writable.
FROM scratch AS wharf
COPY --from=build /out/wharf /wharf
COPY --from=build --chown=65534:65534 /out/acme /acme
ENV WHARF_USER=65534:65534 \
    WHARF_LISTEN=0.0.0.0:80 \
    WHARF_TLS_LISTEN=0.0.0.0:443 \
    WHARF_ADMIN_LISTEN=0.0.0.0:8081
EXPOSE 80 443 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s CMD ["/wharf", "healthcheck"]
ENTRYPOINT ["/wharf"]

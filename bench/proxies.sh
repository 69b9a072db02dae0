# The proxies that wharf is measured against, and the backends (sourced after
# lib.sh, not run). Every config asks the same work of each proxy: HTTP/1.1 to
# the client, keep-alive to the backends, round robin, X-Forwarded-For/-Proto/-Host
# set, no access log. Everything listens where the caller says (loopback).

# bench_spawn LOG CPUS CMD...: start CMD in the background, pinned to CPUS
# (taskset list; "" = not pinned), stdout and stderr appended to LOG. Sets
# SPAWNED to its PID (taskset execs CMD: the PID is the command's) and ends it
# at exit.
bench_spawn() {
    local log=$1 cpus=$2
    shift 2
    if [[ -n $cpus ]]; then
        taskset -c "$cpus" "$@" >>"$log" 2>&1 &
    else
        "$@" >>"$log" 2>&1 &
    fi
    SPAWNED=$!
    BENCH_PIDS+=("$SPAWNED")
}

# bench_wait_up PID URL LOG NAME: wait (10 s) for a 200 from URL (https: the
# certificate is not checked; WRK_HEADER is sent too, so a pool behind basic
# auth answers 200); on failure print LOG and stop the script.
bench_wait_up() {
    local pid=$1 url=$2 log=$3 name=$4 n=100 code
    local extra=()
    [[ -n ${WRK_HEADER:-} ]] && extra=(-H "$WRK_HEADER")
    while ((n-- > 0)); do
        code=$(curl -ks -o /dev/null -m 1 "${extra[@]}" -w '%{http_code}' "$url" || true)
        [[ $code != 200 ]] || return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    say "$name did not answer 200 on $url; its log:"
    tail -20 "$log" >&2
    die "$name did not start"
}

# nginx wants its temporary paths writable: all of them under DIR.
bench_nginx_paths() {
    local t
    for t in client_body proxy fastcgi uwsgi scgi; do
        printf '    %s_temp_path %s/%s;\n' "$t" "$1" "$t"
    done
}

# bench_nginx_backend_conf DIR LISTEN: DIR/nginx.conf, one worker answering
# `return 200` (empty body) on every path, keep-alive without a request limit.
bench_nginx_backend_conf() {
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
$(bench_nginx_paths "$1")
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    server {
        listen $2;
        location / { return 200; }
    }
}
EOF
}

# bench_nginx_proxy_conf DIR LISTEN WORKERS MAXCONN "BACKEND..." [CRT KEY]:
# DIR/nginx.conf. With CRT and KEY, LISTEN is TLS (1.2 and 1.3; nginx's own
# defaults for session resumption: tickets on, no server cache). nginx limits a
# keep-alive connection to 1,000 requests by default, on both sides; HAProxy and
# wharf do not, so the limit is lifted. nginx allocates its WORKERS ×
# worker_connections (MAXCONN) connection structures up front, which shows in
# its RSS: keep MAXCONN at what the run needs.
# BENCH_DEFERRED=1: the listener defers accepts (nginx `deferred`, HAProxy
# `defer-accept`: TCP_DEFER_ACCEPT), as wharf's does by default.
bench_nginx_proxy_conf() {
    local dir=$1 listen=$2 workers=$3 maxconn=$4 backends=$5 crt=${6:-} key=${7:-} b servers="" ssl="" tls=""
    [[ ${BENCH_DEFERRED:-0} != 1 ]] || ssl=" deferred"
    for b in $backends; do servers+="        server $b;"$'\n'; done
    if [[ -n $crt ]]; then
        ssl+=" ssl"
        tls="        ssl_certificate $crt;"$'\n'"        ssl_certificate_key $key;"$'\n'"        ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    mkdir -p "$dir"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $maxconn; }
http {
    access_log off;
$(bench_nginx_paths "$dir")
    keepalive_requests 1000000;
    upstream web {
$servers        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen $listen$ssl;
$tls
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

# bench_haproxy_conf FILE LISTEN THREADS MAXCONN "BACKEND..." [PEM]: with PEM
# (certificate + key), LISTEN is TLS 1.2/1.3. HAProxy reserves two descriptors
# per connection and by default refuses to start when the hard limit of open
# files is below that; `no strict-limits` makes it warn and go on (the idle run
# needs 10,000 client connections but hardly any to the backends).
bench_haproxy_conf() {
    local file=$1 listen=$2 threads=$3 maxconn=$4 backends=$5 pem=${6:-} b i=0 servers="" ssl="" proto=http
    for b in $backends; do servers+="    server s$((++i)) $b"$'\n'; done
    [[ ${BENCH_DEFERRED:-0} != 1 ]] || ssl=" defer-accept"
    if [[ -n $pem ]]; then
        ssl+=" ssl crt $pem ssl-min-ver TLSv1.2 alpn http/1.1"
        proto=https
    fi
    cat >"$file" <<EOF
global
    nbthread $threads
    maxconn $maxconn
    no strict-limits
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option forwardfor
    http-reuse always
frontend fe
    bind $listen$ssl
    http-request set-header X-Forwarded-Proto $proto
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend be
backend be
    balance roundrobin
$servers
EOF
}

# bench_wharf_has BINARY FLAG: true if `BINARY --help` lists FLAG.
bench_wharf_has() { "$1" --help 2>/dev/null | grep -q -- "$2\b"; }

# The tables of bench/pinned.sh (plain awk: Debian's default is mawk).
#
# Load runs (-v cells="ka close …"): input lines
#   CELL ROUND PROXY rps p50_ms p99_ms errors hwm_kB cpu_us cpu_pct other_pct user_us ctx_switches_per_request steal_pct
# (or CELL ROUND PROXY skip); per cell and proxy, the median of the rounds,
# peak RSS the highest, errors the sum.
# Idle runs (-v conns=N): input lines VARIANT PROXY key=value…
# One column per proxy (-v proxies="nginx haproxy wharf wharfb"), then ratios.

function label(p) {
    return p == "nginx" ? "nginx" : p == "haproxy" ? "HAProxy" : p == "wharf" ? "wharf" : "wharf B"
}
function median(k, n, a, i, j, t) {
    for (i = 1; i <= n; i++) a[i] = V[k, i] + 0
    for (i = 2; i <= n; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function agg(k, how, n, i, r) {
    n = N[k]
    if (how == "med") return median(k, n)
    r = V[k, 1] + 0
    for (i = 2; i <= n; i++) r = how == "max" ? (V[k, i] > r ? V[k, i] + 0 : r) : r + V[k, i]
    return r
}
function commas(x, s, out) {
    s = sprintf("%.0f", x)
    out = ""
    while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
    return s out
}
function rest(a, from, n, i, s) { s = a[from]; for (i = from + 1; i <= n; i++) s = s " " a[i]; return s }
function fmt(x, f) { return f == "int" ? commas(x) : sprintf(f, x) }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "" : sprintf("%.2f", a / b) }

# The header, and which ratio columns there are.
function head(title, i, p, h, line) {
    np = split(proxies, P, " ")
    for (i = 1; i <= np; i++) HAS[P[i]] = 1
    h = "| " title " |"
    line = "| --- |"
    for (i = 1; i <= np; i++) { h = h " " label(P[i]) " |"; line = line " ---: |" }
    nr = 0
    if (HAS["wharf"] && HAS["nginx"]) { R[++nr] = "wharf/nginx"; h = h " wharf ÷ nginx |"; line = line " ---: |" }
    if (HAS["wharfb"] && HAS["nginx"]) { R[++nr] = "wharfb/nginx"; h = h " B ÷ nginx |"; line = line " ---: |" }
    if (HAS["wharfb"] && HAS["wharf"]) { R[++nr] = "wharfb/wharf"; h = h " B ÷ A |"; line = line " ---: |" }
    print h
    print line
}
# row TEXT: the values in VAL[proxy] ("" = none), formatted with F; ratios if WITH_RATIO.
function row(text, f, with_ratio, i, s, q) {
    s = "| " text " |"
    for (i = 1; i <= np; i++)
        s = s " " (SKIP[P[i]] ? "skipped" : (P[i] in VAL) ? fmt(VAL[P[i]], f) : "") " |"
    for (i = 1; i <= nr; i++) {
        split(R[i], q, "/")
        s = s " " (with_ratio && !SKIP[q[1]] && (q[1] in VAL) && (q[2] in VAL) ? ratio(VAL[q[1]], VAL[q[2]]) : "") " |"
    }
    print s
}

conns == "" && $4 == "skip" { SKIPPED[$1, $3] = 1; next }
conns == "" {
    k = $1 SUBSEP $3
    n = ++N[k SUBSEP 4]
    for (f = 4; f <= 14; f++) { N[k SUBSEP f] = n; V[k SUBSEP f, n] = $f }
    next
}
{
    for (f = 3; f <= NF; f++) {
        split($f, kv, "=")
        I[$1, $2, kv[1]] = kv[2]
    }
    SEEN[$1, $2] = 1
}

function load_table(nc, C, c, i, m, M, name) {
    head("")
    nc = split(cells, C, " ")
    name["ka"] = "keep-alive"
    name["close"] = "`Connection: close`"
    name["tls-ka"] = "TLS keep-alive"
    name["tls-full"] = "TLS close, full handshakes"
    name["tls-resume"] = "TLS close, resumed sessions"
    # metric: field, aggregation, format, ratio?, text
    split("4 med int 1 req/s;9 med %.1f 1 proxy CPU µs/request;12 med %.1f 1 … of which user space;5 med %.2f 1 p50 ms;6 med %.2f 1 p99 ms;" \
          "8 max %.1f 1 peak RSS MiB;10 med %d 0 proxy CPU % of its core;13 med %.2f 1 context switches/request;7 sum int 0 errors;" \
          "11 max %d 0 other % (highest);14 max %d 0 steal % (highest)", M, ";")
    for (c = 1; c <= nc; c++) {
        for (m = 1; m in M; m++) {
            ns = split(M[m], spec, " ")
            text = rest(spec, 5, ns)
            if (C[c] ~ /^tls-(full|resume)$/ && spec[1] == 4) text = "req/s (= handshakes/s)"
            delete VAL
            delete SKIP
            for (i = 1; i <= np; i++) {
                if (SKIPPED[C[c], P[i]]) { SKIP[P[i]] = 1; continue }
                k = C[c] SUBSEP P[i] SUBSEP spec[1]
                if (!(k in N)) continue
                VAL[P[i]] = agg(k, spec[2])
                if (spec[1] == 8) VAL[P[i]] /= 1024
            }
            row(name[C[c]] ": " text, spec[3], spec[4] + 0)
        }
    }
    for (i = 1; i <= np; i++) {
        note = ""
        for (c = 1; c <= nc; c++) if (SKIPPED[C[c], P[i]]) note = note (note == "" ? "" : "; ") name[C[c]]
        if (note != "") print "\nskipped: " label(P[i]) " in " note " (its --help lists no " tlsflag ": no TLS listener yet)"
    }
}

function idle_table(v, V2, t, i, T, spec, vv, nv) {
    head(commas(conns) " idle client connections")
    split("rss_open %.1f 1 RSS MiB with them open;kib %.1f 1 KiB per connection;hwm %.1f 1 peak RSS MiB;" \
          "rss_after %.1f 1 RSS MiB after they closed;still_open int 0 still open when measured;" \
          "errors %s 0 client errors", T, ";")
    nv = split("request silent partial", V2, " ")
    delete VAL
    for (i = 1; i <= np; i++) if (SEEN["request", P[i]]) VAL[P[i]] = I["request", P[i], "rss_before"] / 1024
    row("RSS MiB before (one request made)", "%.1f", 1)
    for (v = 1; v <= nv; v++) {
        vv = V2[v] == "request" ? "after one request each" : V2[v] == "silent" ? "silent (sent nothing)" : "partial (sent 1 byte of a request)"
        for (t = 1; t in T; t++) {
            ns = split(T[t], spec, " ")
            text = rest(spec, 4, ns)
            delete VAL
            for (i = 1; i <= np; i++) {
                if (!SEEN[V2[v], P[i]]) continue
                if (spec[1] == "kib") VAL[P[i]] = (I[V2[v], P[i], "rss_open"] - I[V2[v], P[i], "rss_before"]) / conns
                else if (spec[1] ~ /^(rss|hwm)/) VAL[P[i]] = I[V2[v], P[i], spec[1]] / 1024
                else VAL[P[i]] = I[V2[v], P[i], spec[1]]
            }
            row(vv ": " text, spec[2], spec[3] + 0)
        }
    }
}

END {
    if (conns == "") load_table()
    else idle_table()
}

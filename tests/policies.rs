//! Per-pool policies through a real wharf on the host, in front of real demo
//! containers, with real clients (curl, for its `--interface` to come from
//! another loopback address and its own decoders for `--compressed`):
//! allow/deny, basic auth, rate limits, compression and header edits, as
//! `labels.md` ("Policies") promises them.

mod support;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;
use support::*;

/// What curl saw.
#[derive(Debug)]
struct Curl {
    status: u16,
    /// Header lines of the final response, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Curl {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Installs curl (Debian) if it is missing, once per test process, as `.ci/run` does.
fn ensure_curl() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if Command::new("curl").arg("--version").output().is_ok() {
            return;
        }
        let ok = Command::new("sh")
            .args(["-c", "apt-get update -qq && apt-get install -y -qq curl"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "curl is missing and could not be installed (apt-get install curl)");
    });
}

/// `curl -sS` to `http://<wharf>/<path>` with `Host: host` and extra arguments.
fn curl(wharf: &Wharf, host: &str, path: &str, extra: &[&str]) -> Curl {
    ensure_curl();
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let name = unique("curl");
    let (head, body) = (dir.join(format!("{name}.head")), dir.join(format!("{name}.body")));
    let url = format!("http://{}{path}", wharf.listen);
    let host_header = format!("Host: {host}");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "60", "-D"])
        .arg(&head)
        .arg("-o")
        .arg(&body)
        .args(["-H", &host_header])
        .args(extra)
        .arg(&url)
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url} {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head_text = std::fs::read_to_string(&head).unwrap_or_default();
    let body_bytes = std::fs::read(&body).unwrap_or_default();
    let _ = (std::fs::remove_file(&head), std::fs::remove_file(&body));
    // The last response's head (curl writes every head it saw, e.g. after a 100).
    let last = head_text.trim_end().rsplit("\r\n\r\n").next().unwrap_or("");
    let mut lines = last.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head_text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Curl {
        status,
        headers,
        body: body_bytes,
    }
}

/// One demo container per pool, each serving `Host: <pool>.test`, plus its labels.
struct Pools {
    net: Network,
    names: Vec<String>,
    _containers: Vec<Container>,
}

impl Pools {
    fn start(tag: &str, specs: &[(&str, Vec<String>)]) -> Pools {
        let net = Network::create(tag);
        let mut names = Vec::new();
        let mut containers = Vec::new();
        for (tag, labels) in specs {
            let name = unique(tag);
            let mut all = vec![format!("wharf.pool={name}"), format!("wharf.host={name}.test")];
            all.extend(labels.iter().cloned());
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            containers.push(named_demo(&net, &name, &all));
            names.push(name);
        }
        Pools {
            net,
            names,
            _containers: containers,
        }
    }

    /// The pool (and host prefix) made for `tag`.
    fn name(&self, tag: &str, specs: &[(&str, Vec<String>)]) -> String {
        self.names[specs.iter().position(|(t, _)| *t == tag).unwrap()].clone()
    }

    async fn wharf(&self, extra: &[&str], ready: &[&str]) -> Wharf {
        let mut args = vec!["--network", self.net.name.as_str()];
        args.extend_from_slice(extra);
        let wharf = Wharf::spawn(&args, &[]).await;
        for pool in ready {
            wait_pool_ready(&wharf, pool).await;
        }
        wharf
    }
}

async fn wait_pool_ready(wharf: &Wharf, pool: &str) {
    poll(&format!("pool {pool} has a ready backend"), secs(30), || async {
        let s = state_at(wharf.admin).await?;
        match backend_states(&s, pool).as_slice() {
            [one] if one == "ready" => Ok(()),
            other => Err(format!("backends {other:?}")),
        }
    })
    .await;
}

fn labels(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `pool`'s `policies` object in `/api/state`.
async fn policies_of(wharf: &Wharf, pool: &str) -> Value {
    let s = wharf.state().await;
    find_pool(&s, pool).unwrap_or_else(|| panic!("no pool {pool}: {s}"))["policies"].clone()
}

async fn metrics(wharf: &Wharf) -> String {
    wharf.admin_get("/metrics").await.expect("GET /metrics").body
}

#[tokio::test]
async fn allow_and_deny_refuse_with_403_and_through_a_trusted_proxy_the_forwarded_address_decides() {
    let specs = [
        ("open", labels(&["wharf.allow=127.0.0.0/8"])),
        ("closed", labels(&["wharf.allow=10.0.0.0/8,192.168.0.0/16"])),
        ("denied", labels(&["wharf.deny=127.0.0.1"])),
        ("behind", labels(&["wharf.allow=203.0.113.0/24"])),
    ];
    let pools = Pools::start("allow", &specs);
    let [open, closed, denied, behind] = ["open", "closed", "denied", "behind"].map(|t| pools.name(t, &specs));
    // 127.0.0.2 plays the proxy in front of wharf; 127.0.0.1 is a plain client.
    let wharf = pools
        .wharf(&["--trusted-proxies", "127.0.0.2"], &[&open, &closed, &denied, &behind])
        .await;
    let host = |p: &str| format!("{p}.test");

    let r = curl(&wharf, &host(&open), "/", &[]);
    assert_eq!((r.status, r.header("x-demo-name")), (200, Some(open.as_str())), "{r:?}");
    let r = curl(&wharf, &host(&closed), "/", &[]);
    assert_eq!((r.status, r.header("x-wharf-error")), (403, Some("forbidden")), "{r:?}");
    assert!(
        r.header("x-demo-name").is_none(),
        "the backend must not be reached: {r:?}"
    );
    // deny: 127.0.0.1 is refused, 127.0.0.2 is not.
    let r = curl(&wharf, &host(&denied), "/", &[]);
    assert_eq!(r.status, 403, "{r:?}");
    let r = curl(&wharf, &host(&denied), "/", &["--interface", "127.0.0.2"]);
    assert_eq!(r.status, 200, "{r:?}");

    // The forwarded address counts only from the trusted proxy.
    let xff = ["-H", "X-Forwarded-For: 203.0.113.9"];
    let r = curl(&wharf, &host(&behind), "/", &xff);
    assert_eq!(r.status, 403, "an untrusted client cannot choose its address: {r:?}");
    let r = curl(
        &wharf,
        &host(&behind),
        "/",
        &[&xff[..], &["--interface", "127.0.0.2"]].concat(),
    );
    assert_eq!(r.status, 200, "the trusted proxy's forwarded client is allowed: {r:?}");
    let other = ["-H", "X-Forwarded-For: 198.51.100.1", "--interface", "127.0.0.2"];
    let r = curl(&wharf, &host(&behind), "/", &other);
    assert_eq!(r.status, 403, "{r:?}");

    let p = policies_of(&wharf, &closed).await;
    assert_eq!(p["allow"], serde_json::json!(["10.0.0.0/8", "192.168.0.0/16"]), "{p}");
    assert_eq!(p["refused"]["allow"], 1, "{p}");
    assert_eq!(policies_of(&wharf, &behind).await["refused"]["allow"], 2);
    let m = metrics(&wharf).await;
    let line = format!("wharf_policy_refusals_total{{pool=\"{behind}\",policy=\"allow\",status=\"403\"}} 2");
    assert!(m.contains(&line), "{line} not in /metrics:\n{m}");
    assert_eq!(policies_of(&wharf, &open).await["refused"]["allow"], 0);
}

/// `user:password` as curl's `-u` takes it.
fn user(u: &str, p: &str) -> String {
    format!("{u}:{p}")
}

#[tokio::test]
async fn basic_auth_admits_the_right_password_refuses_wrong_and_missing_and_excludes_a_plain_password() {
    // Cost 4 keeps the test quick; the hash is what htpasswd -B writes.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let specs = [
        ("auth", vec![format!("wharf.auth.basic=ann:{hash}")]),
        (
            "fwd",
            vec![format!("wharf.auth.basic=ann:{hash}"), "wharf.auth.forward=true".into()],
        ),
        ("plain", labels(&["wharf.auth.basic=ann:s3cret"])),
    ];
    let pools = Pools::start("auth", &specs);
    let [auth, fwd, plain] = ["auth", "fwd", "plain"].map(|t| pools.name(t, &specs));
    let wharf = pools.wharf(&[], &[&auth, &fwd]).await;
    let (host, fwd_host) = (format!("{auth}.test"), format!("{fwd}.test"));

    let r = curl(&wharf, &host, "/", &["-u", &user("ann", "s3cret")]);
    assert_eq!((r.status, r.header("x-demo-name")), (200, Some(auth.as_str())), "{r:?}");
    assert!(
        !r.text().to_ascii_lowercase().contains("authorization:"),
        "the Authorization header must not reach the backend:\n{}",
        r.text()
    );
    let r = curl(&wharf, &host, "/", &["-u", &user("ann", "wrong")]);
    assert_eq!(
        (r.status, r.header("x-wharf-error")),
        (401, Some("unauthorized")),
        "{r:?}"
    );
    let r = curl(&wharf, &host, "/", &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm=") && challenge.contains(&auth),
        "{r:?}"
    );
    let r = curl(&wharf, &host, "/", &["-u", &user("bob", "s3cret")]);
    assert_eq!(r.status, 401, "unknown user: {r:?}");

    // auth.forward=true: the backend sees the header.
    let r = curl(&wharf, &fwd_host, "/", &["-u", &user("ann", "s3cret")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.text().to_ascii_lowercase().contains("authorization: basic"),
        "{}",
        r.text()
    );

    // A plain password is a label error: that container is skipped, with the reason.
    let s = wharf.state().await;
    let container = &pools._containers[2].name;
    let reason = skip_reason(&s, container).unwrap_or_else(|| panic!("{container} not skipped: {s}"));
    assert!(
        reason.contains("wharf.auth.basic") && reason.contains("plain passwords are refused"),
        "{reason}"
    );
    assert!(find_pool(&s, &plain).is_none(), "{s}");

    let p = policies_of(&wharf, &auth).await;
    assert_eq!(
        (p["auth"]["users"].as_u64(), p["refused"]["auth"].as_u64()),
        (Some(1), Some(3)),
        "{p}"
    );
    let m = metrics(&wharf).await;
    let line = format!("wharf_policy_refusals_total{{pool=\"{auth}\",policy=\"auth\",status=\"401\"}} 3");
    assert!(m.contains(&line), "{line} not in /metrics:\n{m}");
}

/// p99 of `n` sequential GETs of `host` through wharf, on a keep-alive connection.
async fn p99(wharf: &Wharf, host: &str, n: usize) -> Duration {
    let client = Client::new();
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = client.get(wharf.listen, host, "/").await.expect("neighbour GET");
        assert_eq!(r.status, 200, "{r:?}");
        times.push(t.elapsed());
    }
    times.sort();
    times[n * 99 / 100]
}

#[tokio::test]
async fn a_thousand_wrong_passwords_do_not_slow_a_neighbour_pool() {
    // Cost 10: a realistic hash, ~50 ms of CPU per verification.
    let hash = bcrypt::hash("s3cret", 10).unwrap();
    let specs = [
        ("guarded", vec![format!("wharf.auth.basic=ann:{hash}")]),
        ("neighbour", vec![]),
    ];
    let pools = Pools::start("brute", &specs);
    let [guarded, neighbour] = ["guarded", "neighbour"].map(|t| pools.name(t, &specs));
    let wharf = pools.wharf(&[], &[&guarded, &neighbour]).await;
    let (host, other) = (format!("{guarded}.test"), format!("{neighbour}.test"));

    let quiet = p99(&wharf, &other, 200).await;
    // 1,000 distinct wrong passwords from 50 concurrent clients.
    let start = Instant::now();
    let attack = {
        let (listen, host) = (wharf.listen, host.clone());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for w in 0..50 {
                let host = host.clone();
                tasks.push(tokio::spawn(async move {
                    let client = Client::new();
                    let mut statuses = Vec::new();
                    for i in 0..20 {
                        let token = base64_basic("ann", &format!("guess-{w}-{i}"));
                        let auth = format!("Basic {token}");
                        let r = client
                            .request(listen, "GET", &host, "/", &[("authorization", auth.as_str())], b"")
                            .await;
                        statuses.push(r.map(|r| r.status).unwrap_or(0));
                    }
                    statuses
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        })
    };
    let busy = p99(&wharf, &other, 200).await;
    let statuses = attack.await.unwrap();
    let took = start.elapsed();
    let count = |s: u16| statuses.iter().filter(|&&x| x == s).count();
    println!(
        "neighbour p99: {quiet:?} quiet, {busy:?} under attack; attack: {} × 401, {} × 429 in {took:?}",
        count(401),
        count(429)
    );
    assert_eq!(count(401) + count(429), 1000, "every attempt refused: {statuses:?}");
    assert!(count(429) > 0, "the verification queue must shed load: {statuses:?}");
    // Hashing 1,000 passwords on the request threads would stall the
    // neighbour for ~50 s; off them and bounded, it stays far below a second.
    assert!(
        busy < Duration::from_secs(1),
        "neighbour p99 {busy:?} under attack (quiet: {quiet:?})"
    );
    let p = policies_of(&wharf, &guarded).await;
    assert_eq!(p["refused"]["auth_busy"].as_u64(), Some(count(429) as u64), "{p}");
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[tokio::test]
async fn a_burst_of_fifty_gets_the_burst_plus_the_refill_and_the_rest_429_with_retry_after() {
    let specs = [("limited", labels(&["wharf.ratelimit=10/s", "wharf.ratelimit.burst=5"]))];
    let pools = Pools::start("rate", &specs);
    let limited = pools.name("limited", &specs);
    let wharf = pools.wharf(&[], &[&limited]).await;
    let host = format!("{limited}.test");

    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (listen, host) = (wharf.listen, host.clone());
        tasks.push(tokio::spawn(async move { get(listen, &host, "/").await }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap().expect("GET through wharf"));
    }
    let took = start.elapsed();
    let ok = answers.iter().filter(|r| r.status == 200).count();
    let limited_answers: Vec<&Resp> = answers.iter().filter(|r| r.status == 429).collect();
    // 5 at once, then one token per 100 ms while the burst was in flight.
    let refill = (took.as_millis() / 100) as usize + 1;
    println!("{ok} × 200 and {} × 429 in {took:?}", limited_answers.len());
    assert_eq!(ok + limited_answers.len(), 50, "only 200s and 429s");
    assert!(
        (5..=5 + refill).contains(&ok),
        "{ok} × 200 in {took:?}: want 5 + at most {refill} refilled"
    );
    for r in &limited_answers {
        assert_eq!(r.header("x-wharf-error"), Some("rate-limited"), "{r:?}");
        let after: u64 = r.header("retry-after").and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(
            (1..=1).contains(&after),
            "Retry-After {after} (a token comes within 100 ms): {r:?}"
        );
    }
    // The bucket refills: after a second, 5 more pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..5 {
        let r = get(wharf.listen, &host, "/").await.unwrap();
        assert_eq!(r.status, 200, "request {i} after the refill: {r:?}");
    }
    let p = policies_of(&wharf, &limited).await;
    assert_eq!(p["ratelimit"]["burst"], 5, "{p}");
    assert_eq!(
        p["refused"]["ratelimit"].as_u64(),
        Some(limited_answers.len() as u64),
        "{p}"
    );
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_hundred_thousand_forwarded_addresses_stay_within_the_key_bound() {
    let specs = [("flood", labels(&["wharf.ratelimit=1/h", "wharf.ratelimit.burst=1"]))];
    let pools = Pools::start("flood", &specs);
    let flood = pools.name("flood", &specs);
    // Every request comes from a trusted proxy (this test, on 127.0.0.1) and names its client.
    let wharf = pools
        .wharf(&["--trusted-proxies", "127.0.0.1", "--workers", "1"], &[&flood])
        .await;
    let host = format!("{flood}.test");
    let before = rss_kib(wharf.pid());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let (listen, host) = (wharf.listen, host.clone());
        tasks.push(tokio::spawn(async move {
            let client = Client::new();
            let mut ok = 0;
            for i in 0..12_500u32 {
                let n = w * 12_500 + i;
                let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
                let r = client
                    .request(listen, "GET", &host, "/", &[("x-forwarded-for", ip.as_str())], b"")
                    .await
                    .expect("GET through wharf");
                ok += usize::from(r.status == 200);
            }
            ok
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap();
    }
    let after = rss_kib(wharf.pid());
    let p = policies_of(&wharf, &flood).await;
    let keys = p["ratelimit"]["keys"].as_u64().unwrap();
    println!(
        "100,000 clients in {:?}: {ok} × 200, {keys} keys held, RSS {before} → {after} KiB",
        start.elapsed()
    );
    assert!(keys <= 65_536, "{keys} keys: the documented bound is 65,536");
    // Each new client had a full bucket until the bound; beyond it they share one.
    assert!((65_536..=65_600).contains(&ok), "{ok} admitted");
    assert!(after < before + 64 * 1024, "RSS grew from {before} to {after} KiB");
}

/// ~200 KB of varied text: compressible, but not a single repeated byte.
fn text_body() -> Vec<u8> {
    let words = [
        "wharf", "pool", "backend", "label", "docker", "policy", "gzip", "zstd", "brotli", "route",
    ];
    let mut x: u32 = 12345;
    let mut out = String::new();
    while out.len() < 200_000 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.push_str(words[(x >> 16) as usize % words.len()]);
        out.push(if x.is_multiple_of(7) { '\n' } else { ' ' });
        out.push_str(&(x % 1000).to_string());
    }
    out.into_bytes()
}

#[tokio::test]
async fn curl_gets_each_encoding_it_asks_for_and_the_body_round_trips_byte_for_byte() {
    let specs = [
        ("zip", labels(&["wharf.compress=true"])),
        ("gz", labels(&["wharf.compress=gzip"])),
    ];
    let pools = Pools::start("compress", &specs);
    let [zip, gz] = ["zip", "gz"].map(|t| pools.name(t, &specs));
    let wharf = pools.wharf(&[], &[&zip, &gz]).await;
    let host = format!("{zip}.test");
    let body = text_body();
    let file = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.txt", unique("body")));
    std::fs::write(&file, &body).unwrap();
    let upload = format!("@{}", file.display());
    let post = ["--data-binary", upload.as_str(), "-H", "Content-Type: text/plain"];

    for enc in ["gzip", "br", "zstd"] {
        let accept = format!("Accept-Encoding: {enc}");
        // --compressed: curl decodes what it gets, as a browser would.
        let args = [&post[..], &["--compressed", "-H", &accept]].concat();
        let r = curl(&wharf, &host, "/echo-body?type=text/plain", &args);
        assert_eq!(r.status, 200, "{enc}: {r:?}");
        assert_eq!(r.header("content-encoding"), Some(enc), "{enc}: {:?}", r.headers);
        assert_eq!(r.header("vary"), Some("accept-encoding"), "{enc}");
        assert!(r.header("content-length").is_none(), "{enc}: {:?}", r.headers);
        assert!(
            r.body == body,
            "{enc}: the body changed ({} bytes back, {} sent)",
            r.body.len(),
            body.len()
        );
        // And on the wire it really is smaller.
        let raw = curl(
            &wharf,
            &host,
            "/echo-body?type=text/plain",
            &[&post[..], &["-H", &accept]].concat(),
        );
        assert!(
            raw.body.len() < body.len() / 2,
            "{enc}: {} bytes on the wire",
            raw.body.len()
        );
    }
    // curl's own offer (deflate, gzip, br, zstd): wharf's first choice, zstd.
    let r = curl(
        &wharf,
        &host,
        "/echo-body?type=text/plain",
        &[&post[..], &["--compressed"]].concat(),
    );
    assert_eq!(r.header("content-encoding"), Some("zstd"), "{:?}", r.headers);
    assert!(r.body == body);
    // A pool offering only gzip answers gzip to a client that prefers br.
    let r = curl(
        &wharf,
        &format!("{gz}.test"),
        "/echo-body?type=text/plain",
        &[&post[..], &["--compressed"]].concat(),
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{:?}", r.headers);
    assert!(r.body == body);
    let _ = std::fs::remove_file(&file);

    // Not compressed: an image, an already encoded body, no-transform, a tiny
    // body, a client that did not ask. Each arrives exactly as the backend sent it.
    let cases = [
        ("/bytes?n=5000&type=image/png", "gzip, br, zstd", None),
        (
            "/bytes?n=5000&type=text/plain&encoding=gzip",
            "gzip, br, zstd",
            Some("gzip"),
        ),
        (
            "/bytes?n=5000&type=text/plain&cache=no-transform",
            "gzip, br, zstd",
            None,
        ),
        ("/bytes?n=100&type=text/plain", "gzip, br, zstd", None),
        ("/bytes?n=5000&type=text/plain", "identity", None),
    ];
    for (path, accept, encoding) in cases {
        let r = curl(&wharf, &host, path, &["-H", &format!("Accept-Encoding: {accept}")]);
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert_eq!(r.header("content-encoding"), encoding, "{path}: {:?}", r.headers);
        let n: usize = path
            .split("n=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(r.body.len(), n, "{path}: the body was changed");
    }
    // A range request is passed through untouched too.
    let r = curl(
        &wharf,
        &host,
        "/bytes?n=5000&type=text/plain",
        &["-H", "Accept-Encoding: gzip", "-H", "Range: bytes=0-9"],
    );
    assert_eq!(r.header("content-encoding"), None, "{:?}", r.headers);
    let p = policies_of(&wharf, &zip).await;
    assert_eq!(p["compress"], serde_json::json!(["zstd", "br", "gzip"]), "{p}");
    assert!(p["compressed"].as_u64().unwrap() >= 7, "{p}");
}

#[tokio::test]
async fn a_gibibyte_compressed_as_it_streams_keeps_wharfs_memory_flat() {
    let specs = [("big", labels(&["wharf.compress=zstd"]))];
    let pools = Pools::start("stream", &specs);
    let big = pools.name("big", &specs);
    let wharf = pools.wharf(&["--workers", "1"], &[&big]).await;
    let before = rss_kib(wharf.pid());
    let pid = wharf.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    ensure_curl();
    let start = Instant::now();
    // 1 GiB in 64 KiB chunks, decoded by curl and counted by wc.
    let url = format!(
        "http://{}/chunked?n=1073741824&chunk=65536&type=text/plain",
        wharf.listen
    );
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "curl -sS --max-time 300 --compressed -H 'Accept-Encoding: zstd' -H 'Host: {big}.test' -D /dev/stderr '{url}' | wc -c"
        ))
        .output()
        .unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    sampler.join().unwrap();
    let head = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    let bytes: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "1 GiB through zstd in {:?}; wharf RSS {before} KiB before, peak {peak} KiB",
        start.elapsed()
    );
    assert!(head.contains("content-encoding: zstd"), "{head}");
    assert_eq!(bytes, 1 << 30, "curl decoded {bytes} bytes");
    assert!(
        peak < before + 32 * 1024,
        "RSS rose from {before} to {peak} KiB while streaming"
    );
}

#[tokio::test]
async fn header_labels_set_and_remove_request_and_response_headers_and_security_headers_are_added() {
    let specs = [(
        "hdr",
        labels(&[
            "wharf.headers.request.X-Tenant=blue",
            "wharf.headers.request.User-Agent=",
            "wharf.headers.response.X-Served-By=wharf",
            "wharf.headers.response.X-Demo-Hostname=",
            "wharf.headers.response.X-Frame-Options=DENY",
            "wharf.security_headers=true",
        ]),
    )];
    let pools = Pools::start("headers", &specs);
    let hdr = pools.name("hdr", &specs);
    let wharf = pools.wharf(&[], &[&hdr]).await;
    let r = curl(&wharf, &format!("{hdr}.test"), "/", &["-A", "curl-test-agent"]);
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.text().to_ascii_lowercase();
    assert!(echo.contains("x-tenant: blue"), "request header set:\n{echo}");
    assert!(!echo.contains("curl-test-agent"), "request header removed:\n{echo}");
    assert_eq!(r.header("x-served-by"), Some("wharf"), "{:?}", r.headers);
    assert_eq!(
        r.header("x-demo-hostname"),
        None,
        "response header removed: {:?}",
        r.headers
    );
    assert_eq!(r.header("x-demo-name"), Some(hdr.as_str()), "others untouched");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("strict-origin-when-cross-origin"));
    assert_eq!(
        r.header("x-frame-options"),
        Some("DENY"),
        "a label overrides the safe set"
    );
}

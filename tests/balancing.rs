//! Balancing end to end on the real daemon, with the demo backend: the
//! load-based algorithms steer away from a backend ten times slower, ip_hash
//! keeps clients in place when a backend joins, weights 3:1 split traffic
//! 75/25, and a sticky cookie pins a client until its backend goes away.
//! (labels.md, "Balancing")

mod support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use ::http::header::{COOKIE, HOST, SET_COOKIE};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::net::TcpSocket;

/// Waits (30 s at most) until `pool` has exactly these containers ready.
async fn wait_ready(wharf: &Wharf, net: &Network, pool: &str, want: &[&Container]) {
    let what = format!("pool {pool} has {} ready backends", want.len());
    wait_ready_backends(wharf.admin, pool, want, net, secs(30), &what).await;
}

/// `workers` clients, each sending `each` requests one after the other on
/// its keep-alive connection. Returns how many each backend (by hostname) answered.
async fn closed_loop(wharf: &Wharf, host: &str, path: &str, workers: usize, each: usize) -> BTreeMap<String, u32> {
    let client = Client::new();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (client, addr, host, path) = (client.clone(), wharf.listen, host.to_string(), path.to_string());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(each);
            for _ in 0..each {
                let r = client.get(addr, &host, &path).await?;
                if r.status != 200 {
                    return Err(format!("{} {:?}: {}", r.status, r.header("x-wharf-error"), r.body));
                }
                seen.push(r.header("x-demo-hostname").unwrap_or("?").to_string());
            }
            Ok::<_, String>(seen)
        }));
    }
    let mut counts = BTreeMap::new();
    for t in tasks {
        match t.await {
            Ok(Ok(seen)) => seen.into_iter().for_each(|h| *counts.entry(h).or_insert(0) += 1),
            Ok(Err(e)) => panic!("request through wharf failed: {e}"),
            Err(e) => panic!("worker panicked: {e}"),
        }
    }
    counts
}

fn share(counts: &BTreeMap<String, u32>, host: &str) -> f64 {
    let total: u32 = counts.values().sum();
    f64::from(counts.get(host).copied().unwrap_or(0)) / f64::from(total.max(1))
}

/// Three backends of equal weight, the third ten times slower (200 ms
/// against 20 ms); 8 clients send 400 requests. Returns the slow one's share.
async fn slow_backend_share(balance: &str) -> f64 {
    let net = Network::create("slow");
    let labels = ["wharf.pool=slow".to_string(), format!("wharf.balance={balance}")];
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let a = demo(&net, "fast-a", &labels, &[]);
    let b = demo(&net, "fast-b", &labels, &[]);
    let slow = demo(&net, "slow", &labels, &["-e", "DEMO_DELAY=180ms"]);
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_ready(&wharf, &net, "slow", &[&a, &b, &slow]).await;
    let counts = closed_loop(&wharf, "slow.test", "/slow?ms=20", 8, 50).await;
    let s = share(&counts, &slow.hostname());
    eprintln!(
        "{balance}: answers per backend {counts:?}; the slow one ({}) got {:.1}%",
        slow.hostname(),
        s * 100.0
    );
    assert_eq!(counts.values().sum::<u32>(), 400);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn least_conn_gives_a_backend_ten_times_slower_under_15_percent() {
    let s = slow_backend_share("least_conn").await;
    assert!(s < 0.15, "slow backend share {s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn p2c_gives_a_backend_ten_times_slower_under_15_percent() {
    let s = slow_backend_share("p2c").await;
    assert!(s < 0.15, "slow backend share {s}");
}

#[tokio::test(flavor = "multi_thread")]
async fn round_robin_as_a_control_gives_the_slow_backend_its_third() {
    // Shows that the set-up above does punish an algorithm that ignores load.
    let s = slow_backend_share("round_robin").await;
    assert!((s - 1.0 / 3.0).abs() < 0.02, "slow backend share {s}");
}

/// One GET on a fresh connection whose source address is `src` (any
/// 127.0.0.0/8 address is local on Linux). Returns the answering backend's hostname.
async fn get_from(src: Ipv4Addr, to: SocketAddr, host: &str) -> Result<String, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::from((src, 0)))
        .map_err(|e| format!("bind {src}: {e}"))?;
    let stream = socket
        .connect(to)
        .await
        .map_err(|e| format!("connect from {src}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = ::http::Request::get("/")
        .header(HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let name = resp
        .headers()
        .get("x-demo-hostname")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let _ = resp.into_body().collect().await;
    match name {
        Some(n) if status == 200 => Ok(n),
        _ => Err(format!("{status} from {src}")),
    }
}

/// 1,000 client addresses 127.0.{1..4}.{1..250}.
fn clients() -> Vec<Ipv4Addr> {
    (0..1000u32)
        .map(|k| Ipv4Addr::new(127, 0, 1 + (k / 250) as u8, 1 + (k % 250) as u8))
        .collect()
}

async fn assignment(wharf: &Wharf, clients: &[Ipv4Addr]) -> Vec<String> {
    let mut out = Vec::with_capacity(clients.len());
    for chunk in clients.chunks(50) {
        let answers = futures::future::join_all(chunk.iter().map(|&ip| get_from(ip, wharf.listen, "hash.test"))).await;
        for (ip, a) in chunk.iter().zip(answers) {
            out.push(a.unwrap_or_else(|e| panic!("client {ip}: {e}")));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_hash_a_fourth_backend_takes_only_its_share_and_nobody_moves_elsewhere() {
    let net = Network::create("hash");
    let labels = ["wharf.pool=hash", "wharf.balance=ip_hash"];
    let three: Vec<Container> = (0..3).map(|i| demo(&net, &format!("h{i}"), &labels, &[])).collect();
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_ready(&wharf, &net, "hash", &three.iter().collect::<Vec<_>>()).await;

    let clients = clients();
    let before = assignment(&wharf, &clients).await;
    // Stable while nothing changes.
    assert_eq!(assignment(&wharf, &clients[..100]).await, before[..100]);

    let fourth = demo(&net, "h3", &labels, &[]);
    let mut all: Vec<&Container> = three.iter().collect();
    all.push(&fourth);
    wait_ready(&wharf, &net, "hash", &all).await;
    let after = assignment(&wharf, &clients).await;

    let new = fourth.hostname();
    let moved: Vec<usize> = (0..clients.len()).filter(|&i| before[i] != after[i]).collect();
    let wrong: Vec<String> = moved
        .iter()
        .filter(|&&i| after[i] != new)
        .map(|&i| format!("{}: {} -> {}", clients[i], before[i], after[i]))
        .collect();
    let kept = 1.0 - moved.len() as f64 / clients.len() as f64;
    let kept_200 = (0..200).filter(|&i| before[i] == after[i]).count();
    eprintln!(
        "ip_hash 3 -> 4 backends: {:.1}% of {} clients kept their backend ({kept_200} of the first 200); \
         {} moved, {} of them to the new backend",
        kept * 100.0,
        clients.len(),
        moved.len(),
        moved.len() - wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "clients moved between backends that stayed: {wrong:?}"
    );
    assert!(kept >= 0.70, "only {kept} kept their backend");
    for c in &three {
        let n = before.iter().filter(|h| **h == c.hostname()).count();
        assert!(n > 200, "{} had only {n} of 1000 clients before", c.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn weights_3_1_split_400_requests_75_25_for_round_robin_and_random() {
    let net = Network::create("weights");
    let mut containers = Vec::new();
    for balance in ["round_robin", "random"] {
        let pool = format!("wharf.pool=w-{balance}");
        let host = format!("wharf.host={balance}.test");
        let algo = format!("wharf.balance={balance}");
        let heavy = demo(&net, "heavy", &[&pool, &host, &algo, "wharf.weight=3"], &[]);
        let light = demo(&net, "light", &[&pool, &host, &algo, "wharf.weight=1"], &[]);
        containers.push((balance, heavy, light));
    }
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    for (balance, heavy, light) in &containers {
        wait_ready(&wharf, &net, &format!("w-{balance}"), &[heavy, light]).await;
    }
    for (balance, heavy, _) in &containers {
        let counts = closed_loop(&wharf, &format!("{balance}.test"), "/", 1, 400).await;
        let s = share(&counts, &heavy.hostname());
        eprintln!("{balance} 3:1 over 400 requests: heavy {:.1}%", s * 100.0);
        match *balance {
            // Deterministic: exactly 300 of 400.
            "round_robin" => assert!((s - 0.75).abs() <= 0.03, "{balance}: {s}"),
            // Independent draws: ±3 points is only 1.4 standard deviations at
            // n = 400 (σ = 2.2 points); 4σ keeps a false alarm below 1 in 10 000.
            _ => assert!((s - 0.75).abs() <= 0.087, "{balance}: {s}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sticky_cookie_pins_the_client_until_its_backend_stops() {
    let net = Network::create("sticky");
    let labels = ["wharf.pool=sticky", "wharf.sticky=cookie:srv"];
    let a = demo(&net, "a", &labels, &[]);
    let b = demo(&net, "b", &labels, &[]);
    let wharf = Wharf::spawn(&["--network", &net.name], &[]).await;
    wait_ready(&wharf, &net, "sticky", &[&a, &b]).await;

    let first = wharf.get("sticky.test", "/").await.unwrap_or_else(|e| panic!("{e}"));
    let set = first.header(SET_COOKIE.as_str()).unwrap_or_default().to_string();
    let Some(token) = set.strip_prefix("srv=").and_then(|v| v.split(';').next()) else {
        panic!("no sticky cookie in {set:?}");
    };
    assert!(set.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{set}");
    assert!(
        token.len() == 16 && token.bytes().all(|c| c.is_ascii_hexdigit()),
        "{token}"
    );
    let pinned = first.header("x-demo-hostname").unwrap_or_default().to_string();
    let (pinned_c, other_c) = if pinned == a.hostname() { (&a, &b) } else { (&b, &a) };
    assert!(
        !set.contains(&pinned_c.ip(&net.name).to_string()),
        "the cookie leaks the address: {set}"
    );

    let cookie = format!("srv={token}");
    for _ in 0..10 {
        let r = wharf
            .request("GET", "sticky.test", "/", &[(COOKIE.as_str(), &cookie)], b"")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            r.header("x-demo-hostname"),
            Some(pinned.as_str()),
            "round robin alone would alternate"
        );
        assert_eq!(r.header(SET_COOKIE.as_str()), None, "the cookie is already right");
    }

    pinned_c.stop(5);
    let other = other_c.hostname();
    let (moved, _) = poll("the client moves to the other backend", secs(20), || async {
        let r = wharf
            .request("GET", "sticky.test", "/", &[(COOKIE.as_str(), &cookie)], b"")
            .await?;
        match r.header("x-demo-hostname") {
            Some(h) if r.status == 200 && h == other => Ok(r),
            _ => Err(format!("{} {:?}", r.status, r.header("x-demo-hostname"))),
        }
    })
    .await;
    let rewritten = moved.header(SET_COOKIE.as_str()).unwrap_or_default().to_string();
    assert!(
        rewritten.starts_with("srv=") && !rewritten.contains(token),
        "{rewritten}"
    );
}

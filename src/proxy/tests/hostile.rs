//! Hostile and broken clients, over raw sockets: their failures are theirs
//! (400/408/499, never a backend error or an ejection), and requests that
//! must not be forwarded (no Host, two Hosts, CONNECT) are refused before
//! any backend sees them; a backend's unsolicited `101` is not passed on.

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backends;
use super::fixture::{timeouts, Wharf};
use crate::health;
use crate::model::PoolOptions;

/// Write `bytes` on a new connection, then read until wharf closes it or
/// `within` passes; `close_after_write` shuts the client's side (an upload
/// abandoned mid-body). Returns what came back.
async fn exchange(wharf: &Wharf, bytes: &[u8], close_after_write: bool, within: Duration) -> String {
    let mut s = TcpStream::connect(wharf.addr).await.expect("connect to wharf");
    s.write_all(bytes).await.expect("write");
    if close_after_write {
        drop(s);
        return String::new();
    }
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
        }
        // One response is all these tests want.
        if got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"\n") && got.len() > 40 {
            let text = String::from_utf8_lossy(&got);
            if text.contains("wharf:") || text.contains("content-length: 0") {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn status(resp: &str) -> Option<u16> {
    resp.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn client_body_errors_are_answered_400_or_499_and_never_eject_the_backend() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);
    // Far more than the consecutive failures that eject a backend.
    for i in 0..30 {
        // A chunk size that is not hex, after a good chunk.
        let bad_chunk =
            b"POST /up HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nxx\r\n";
        let resp = exchange(&wharf, bad_chunk, false, Duration::from_secs(10)).await;
        // wharf answers 400, or hyper closes the broken connection first;
        // never a 502 that blames the backend.
        assert!(
            resp.is_empty() || status(&resp) == Some(400),
            "bad chunk #{i}: {resp:?}"
        );
        // An upload abandoned mid-body.
        let cut = b"POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nonly a few bytes";
        exchange(&wharf, cut, true, Duration::ZERO).await;
    }
    wharf.settled().await;
    assert_eq!(
        shared.errors.load(SeqCst),
        0,
        "a client's failure was counted against the backend"
    );
    assert!(!shared.health.is_ejected(health::now_ms()), "the backend was ejected");
    assert!(wharf.pool("web").backends[0].is_available(health::now_ms()));
    assert!(
        wharf.proxy.stats.client_errors.load(SeqCst) >= 30,
        "client errors are counted as such"
    );
    assert_eq!(wharf.proxy.stats.unreachable.load(SeqCst), 0);
    let ok = super::client::get(wharf.addr, "/after").await;
    assert_eq!(ok.status, 200, "the backend still serves");
}

#[tokio::test]
async fn a_trickling_upload_is_cut_at_the_body_timeout_with_408_and_no_backend_blamed() {
    let a = backends::named("a").await;
    let mut t = timeouts();
    t.body_idle = Duration::from_millis(300);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let shared = wharf.shared("web", a.addr);
    let started = Instant::now();
    let head = b"POST /slow HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1000\r\n\r\nfirst bytes";
    let resp = exchange(&wharf, head, false, Duration::from_secs(20)).await;
    println!("cut after {:?}", started.elapsed());
    assert_eq!(status(&resp), Some(408), "{resp:?}");
    assert!(resp.contains("x-wharf-error: body-timeout"), "{resp:?}");
    wharf.settled().await;
    assert_eq!(shared.errors.load(SeqCst), 0);
    assert_eq!(wharf.proxy.stats.timeouts.load(SeqCst), 0, "not a backend timeout");
}

#[tokio::test]
async fn requests_without_host_with_two_hosts_or_conflicting_targets_get_400_and_connect_405() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let cases: [(&[u8], u16, &str); 5] = [
        (b"GET / HTTP/1.1\r\n\r\n", 400, "no Host"),
        (
            b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
            400,
            "two Hosts",
        ),
        (
            b"GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
            400,
            "Host vs absolute target",
        ),
        (
            b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n",
            405,
            "CONNECT",
        ),
        (b"GET / HTTP/1.0\r\n\r\n", 200, "HTTP/1.0 may omit Host"),
    ];
    for (bytes, want, what) in cases {
        let resp = exchange(&wharf, bytes, false, Duration::from_secs(10)).await;
        assert_eq!(status(&resp), Some(want), "{what}: {resp:?}");
    }
    assert_eq!(a.log.count(), 1, "only the HTTP/1.0 request reached the backend");
}

#[tokio::test]
async fn a_backends_unsolicited_101_is_answered_502() {
    let up = backends::upgrade_echo().await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[up.addr]);
    let r = super::client::get(wharf.addr, "/plain").await;
    assert_eq!(r.status, 502);
    assert_eq!(r.wharf_error(), Some("bad-response"));
    assert_eq!(wharf.proxy.stats.bad_responses.load(SeqCst), 1);
}

#[tokio::test]
async fn spoofed_client_ip_headers_from_an_untrusted_client_never_reach_the_backend() {
    let a = backends::named("a").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[a.addr]);
    let spoof = b"GET /who HTTP/1.1\r\nHost: app.test\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\n\
True-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Client-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\
Connection: close\r\n\r\n";
    let resp = exchange(&wharf, spoof, false, Duration::from_secs(10)).await;
    assert_eq!(status(&resp), Some(200), "{resp:?}");
    let seen = a.log.last();
    for (name, value) in &seen.headers {
        assert!(
            !value.as_bytes().windows(7).any(|w| w == b"6.6.6.6"),
            "{name}: {value:?} reached the backend"
        );
    }
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("forwarded"), None);
}

/// An open tunnel through wharf to an echoing backend, checked with one ping.
async fn open_tunnel(wharf: &Wharf) -> TcpStream {
    let mut c = TcpStream::connect(wharf.addr).await.unwrap();
    c.write_all(b"GET /ws HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = super::client::read_head(&mut c).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    ping(&mut c).await.expect("a fresh tunnel echoes");
    c
}

async fn ping(c: &mut TcpStream) -> Result<(), String> {
    c.write_all(b"ping").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
        .await
        .map_err(|_| "no echo within 5 s".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// Time until wharf closes `c` (EOF or reset), failing after `within`.
async fn closed_after(c: &mut TcpStream, within: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(within.saturating_sub(start.elapsed()), c.read(&mut buf)).await {
            Err(_) => panic!("the tunnel was still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn a_silent_tunnel_is_closed_at_the_tunnel_idle_timeout_and_frees_its_slot() {
    let echo = backends::upgrade_echo().await;
    let mut t = timeouts();
    t.tunnel_idle = Duration::from_millis(400);
    let wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[echo.addr]);
    let shared = wharf.shared("web", echo.addr);
    let mut c = open_tunnel(&wharf).await;
    // Traffic keeps it open past the timeout.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        ping(&mut c).await.expect("an active tunnel stays open");
    }
    let took = closed_after(&mut c, Duration::from_secs(10)).await;
    println!("silent tunnel closed after {took:?}");
    assert!(
        took >= Duration::from_millis(300),
        "closed before its idle timeout: {took:?}"
    );
    super::client::eventually("the slot is released", || shared.in_flight.load(SeqCst) == 0).await;
    assert_eq!(wharf.proxy.tunnels.open(), 0);
    assert_eq!(wharf.proxy.tunnels.closed_by_wharf.load(SeqCst), 1);
}

#[tokio::test]
async fn a_tunnel_is_closed_when_its_backend_leaves_the_pool() {
    let echo = backends::upgrade_echo().await;
    let other = backends::named("other").await;
    let wharf = Wharf::start().await;
    wharf.serve(PoolOptions::default(), &[echo.addr]);
    let mut c = open_tunnel(&wharf).await;
    // The backend is removed (stopped, or disconnected from the network).
    wharf.serve(PoolOptions::default(), &[other.addr]);
    let took = closed_after(&mut c, Duration::from_secs(10)).await;
    println!("tunnel closed {took:?} after its backend left");
    super::client::eventually("the backend's side is closed too", || echo.log.open() == 0).await;
}

#[tokio::test]
async fn at_shutdown_open_tunnels_keep_working_for_the_drain_time_then_close() {
    let echo = backends::upgrade_echo().await;
    let mut t = timeouts();
    t.drain = Duration::from_millis(1500);
    let mut wharf = Wharf::with_timeouts(t).await;
    wharf.serve(PoolOptions::default(), &[echo.addr]);
    let mut c = open_tunnel(&wharf).await;
    let started = Instant::now();
    let served = wharf.shut_down();
    tokio::time::sleep(Duration::from_millis(300)).await;
    ping(&mut c).await.expect("the tunnel still works while wharf drains");
    let took = closed_after(&mut c, Duration::from_secs(15)).await + Duration::from_millis(300);
    println!("tunnel closed {took:?} after shutdown began (drain 1.5 s)");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "closed before the drain time: {:?}",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the server finished after the drain")
        .unwrap();
}

#[tokio::test]
async fn with_max_conns_an_h2_client_with_many_streams_opens_at_most_the_cap_of_upstream_connections() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let slow = backends::delayed("slow", Duration::from_millis(300)).await;
    let wharf = Wharf::start().await;
    let opts = PoolOptions {
        max_conns: 4,
        ..PoolOptions::default()
    };
    wharf.serve(opts, &[slow.addr]);
    let stream = TcpStream::connect(wharf.addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let streams: Vec<_> = (0..40)
        .map(|i| {
            let mut s = sender.clone();
            tokio::spawn(async move {
                let req = http::Request::get(format!("http://app.test/{i}")).body(Full::<bytes::Bytes>::default());
                let resp = s.send_request(req.unwrap()).await.expect("a response");
                let status = resp.status().as_u16();
                let code = resp
                    .headers()
                    .get("x-wharf-error")
                    .map(|v| v.to_str().unwrap().to_string());
                let _ = resp.into_body().collect().await;
                (status, code)
            })
        })
        .collect();
    let (mut ok, mut full) = (0, 0);
    for s in streams {
        match s.await.unwrap() {
            (200, _) => ok += 1,
            (503, Some(code)) if code == "backend-full" => full += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    println!(
        "{ok} served, {full} refused backend-full; upstream connections: {}",
        slow.log.accepted()
    );
    assert!(
        slow.log.accepted() <= 4,
        "opened {} upstream connections",
        slow.log.accepted()
    );
    assert!(ok >= 8, "the 4 in flight and the 4 queued are served: {ok}");
    assert_eq!(ok + full, 40);
}

//! A Docker socket interceptor: an in-process proxy on a Unix socket of the
//! test's own in front of `/var/run/docker.sock`; wharf reaches it through
//! `DOCKER_HOST=unix://<path>`.
//!
//! * **Cut**: [`SocketProxy::cut`] drops every proxied connection and removes
//!   the socket (new connections are refused) until [`SocketProxy::restore`]:
//!   a daemon restart, or a socket proxy that cuts long streams.
//! * **Narrow** ([`SocketProxy::quiet`]): only one network's events reach
//!   the `/events` stream, as on a quiet Docker host.
//! * **Filter** ([`SocketProxy::filtering`]): only what a [`Filter`] allows
//!   reaches the daemon (e.g. GET and HEAD on the endpoints wharf reads, as a
//!   hardened socket proxy would); anything else is answered `403` by the
//!   proxy itself (header `x-sockproxy: refused`, a Docker-style JSON error)
//!   and the connection is closed.
//!
//! Narrowing and filtering read each request head, so every call is recorded
//! ([`SocketProxy::calls`]), refused ones too. They forward only body-less
//! requests (wharf only reads): a request announcing a body is refused. The
//! plain proxy ([`SocketProxy::start`]) copies bytes as they come and
//! records nothing. Refusing assumes the client does not pipeline (no Docker
//! client does): when a request arrives, the answers to the earlier ones on
//! its connection have all been delivered.
//!
//! ```ignore
//! let proxy = SocketProxy::filtering(&sock, Filter::wharf_reads());
//! let wharf = Wharf::spawn(&[], &[("DOCKER_HOST", &format!("unix://{}", sock.display()))]).await;
//! assert!(proxy.calls().iter().all(|c| c.refused.is_none()));
//! ```

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::{AbortHandle, JoinHandle};

use super::rawhttp::{read_head, Head};

/// The daemon's socket, where every proxied connection goes.
pub const DOCKER_SOCK: &str = "/var/run/docker.sock";

/// Which requests may reach the daemon: these methods, on these endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    methods: Vec<String>,
    /// Paths without the API version prefix; a `*` segment stands for one
    /// segment (never `.` or `..`).
    endpoints: Vec<String>,
}

impl Filter {
    /// `methods` (e.g. `["GET", "HEAD"]`) on `endpoints` (e.g. `"/containers/*/json"`).
    pub fn new(methods: &[&str], endpoints: &[&str]) -> Filter {
        Filter {
            methods: methods.iter().map(|m| m.to_string()).collect(),
            endpoints: endpoints.iter().map(|e| e.to_string()).collect(),
        }
    }

    /// GET and HEAD on what wharf reads: ping and version (API
    /// negotiation), the container list, a container's inspect, the events.
    pub fn wharf_reads() -> Filter {
        Filter::new(
            &["GET", "HEAD"],
            &[
                "/_ping",
                "/version",
                "/containers/json",
                "/containers/*/json",
                "/events",
            ],
        )
    }

    /// `Ok`, or why a request `method target` is refused. The query and an
    /// API version prefix (`/v1.41`) are ignored.
    pub fn check(&self, method: &str, target: &str) -> Result<(), String> {
        if !self.methods.iter().any(|m| m == method) {
            return Err(format!(
                "method {method} not allowed (only {})",
                self.methods.join(", ")
            ));
        }
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let segments = match segments.split_first() {
            Some((v, rest)) if is_api_version(v) => rest,
            _ => &segments[..],
        };
        let matches = |endpoint: &String| {
            let want: Vec<&str> = endpoint.split('/').skip(1).collect();
            want.len() == segments.len()
                && want
                    .iter()
                    .zip(segments)
                    .all(|(w, s)| *w == *s || (*w == "*" && !s.is_empty() && *s != "." && *s != ".."))
        };
        if self.endpoints.iter().any(matches) {
            Ok(())
        } else {
            Err(format!("endpoint {path} not allowed"))
        }
    }
}

/// `v1.41` and the like.
fn is_api_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// One request the proxy read: as the client sent it, and whether it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    /// Path and query, before any narrowing.
    pub target: String,
    /// Why the proxy answered it itself; `None`: forwarded to the daemon.
    pub refused: Option<String>,
}

/// What the proxy does to requests (nothing, for the plain proxy).
#[derive(Debug, Clone, Default)]
struct Rules {
    /// Only this network's events reach `/events`.
    narrow_events_to: Option<String>,
    filter: Option<Filter>,
}

impl Rules {
    fn reads_requests(&self) -> bool {
        self.narrow_events_to.is_some() || self.filter.is_some()
    }

    /// The call a request head makes, refused or not.
    fn judge(&self, head: &[u8]) -> Call {
        let parsed = Head::parse(head);
        let line = parsed.as_ref().map_err(Clone::clone).and_then(|h| {
            let (m, t, _) = h.request_line()?;
            Ok((m.to_string(), t.to_string()))
        });
        let (method, target) = line.clone().unwrap_or_default();
        let refused = match (&parsed, &line) {
            (Err(e), _) | (_, Err(e)) => Some(e.clone()),
            (Ok(h), Ok(_)) if h.has_body() => Some("request bodies are not forwarded by this proxy".to_string()),
            _ => self.filter.as_ref().and_then(|f| f.check(&method, &target).err()),
        };
        Call {
            method,
            target,
            refused,
        }
    }
}

/// The interceptor; see the module docs. Dropping it stops everything and
/// removes the socket.
pub struct SocketProxy {
    path: PathBuf,
    rules: Arc<Rules>,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accepted: Arc<AtomicUsize>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl SocketProxy {
    /// A plain proxy at `path`: bytes copied both ways, nothing read.
    pub fn start(path: &Path) -> SocketProxy {
        SocketProxy::new(path, Rules::default())
    }

    /// A proxy that passes only `network`'s events (connect, disconnect) to
    /// the `/events` stream: a quiet Docker host. Everything else is forwarded as is.
    pub fn quiet(path: &Path, network: &str) -> SocketProxy {
        SocketProxy::new(
            path,
            Rules {
                narrow_events_to: Some(network.to_string()),
                filter: None,
            },
        )
    }

    /// A proxy that forwards only what `filter` allows and refuses the rest.
    pub fn filtering(path: &Path, filter: Filter) -> SocketProxy {
        SocketProxy::new(
            path,
            Rules {
                narrow_events_to: None,
                filter: Some(filter),
            },
        )
    }

    fn new(path: &Path, rules: Rules) -> SocketProxy {
        let mut p = SocketProxy {
            path: path.to_path_buf(),
            rules: Arc::new(rules),
            accept: None,
            conns: Arc::default(),
            accepted: Arc::default(),
            calls: Arc::default(),
        };
        p.restore();
        p
    }

    /// The socket's path (for `DOCKER_HOST=unix://…`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Every request read so far, in order (none for the plain proxy).
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// (Re)binds the socket path and accepts again.
    pub fn restore(&mut self) {
        assert!(self.accept.is_none(), "already accepting");
        let _ = std::fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap_or_else(|e| panic!("bind {}: {e}", self.path.display()));
        let (conns, accepted) = (Arc::clone(&self.conns), Arc::clone(&self.accepted));
        let (rules, calls) = (Arc::clone(&self.rules), Arc::clone(&self.calls));
        self.accept = Some(tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, Ordering::Relaxed);
                let (rules, calls) = (Arc::clone(&rules), Arc::clone(&calls));
                let task = tokio::spawn(async move {
                    let Ok(daemon) = UnixStream::connect(DOCKER_SOCK).await else {
                        return;
                    };
                    if rules.reads_requests() {
                        serve_read(client, daemon, &rules, &calls).await;
                    } else {
                        let (mut client, mut daemon) = (client, daemon);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut daemon).await;
                    }
                });
                conns.lock().unwrap().push(task.abort_handle());
            }
        }));
    }

    /// Stops accepting (the socket path disappears) and cuts every proxied
    /// connection; returns how many were cut.
    pub async fn cut(&mut self) -> usize {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await; // the listener is closed once this returns
        }
        let _ = std::fs::remove_file(&self.path);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap());
        for c in &conns {
            c.abort();
        }
        conns.len()
    }
}

impl Drop for SocketProxy {
    fn drop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for c in self.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            c.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One connection whose requests are read: heads judged, recorded and
/// forwarded (narrowed), answers copied back, a refusal answered here.
async fn serve_read(client: UnixStream, daemon: UnixStream, rules: &Rules, calls: &Mutex<Vec<Call>>) {
    let (client_read, mut client_write) = client.into_split();
    let (mut daemon_read, daemon_write) = daemon.into_split();
    let mut requests = Box::pin(forward_requests(client_read, daemon_write, rules, calls));
    let mut responses = Box::pin(tokio::io::copy(&mut daemon_read, &mut client_write));
    enum End {
        Client(Option<String>),
        Daemon,
    }
    let end = tokio::select! {
        refusal = &mut requests => End::Client(refusal),
        _ = &mut responses => End::Daemon,
    };
    match end {
        End::Client(Some(refusal)) => {
            // Every earlier answer was delivered (no pipelining): nothing is lost.
            drop(responses);
            let _ = client_write.write_all(refusal.as_bytes()).await;
            let _ = client_write.shutdown().await;
        }
        End::Client(None) => {
            // The client is done sending: let the daemon finish its answers.
            let _ = responses.await;
            let _ = client_write.shutdown().await;
        }
        End::Daemon => {
            drop(responses);
            let _ = client_write.shutdown().await;
            let _ = requests.await;
        }
    }
}

/// Reads request heads from `from` and forwards the allowed ones to `to`
/// (an events request narrowed); returns the refusal to answer, if one
/// ended it, after closing `to` for writing.
async fn forward_requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    rules: &Rules,
    calls: &Mutex<Vec<Call>>,
) -> Option<String> {
    let mut buf = Vec::new();
    let refusal = loop {
        let Ok(Some(head)) = read_head(&mut from, &mut buf).await else {
            break None;
        };
        let call = rules.judge(&head);
        calls.lock().unwrap().push(call.clone());
        if let Some(why) = call.refused {
            break Some(refusal(&call.method, &call.target, &why));
        }
        let head = String::from_utf8_lossy(&head);
        let head = match &rules.narrow_events_to {
            Some(network) => narrow_events(&head, network),
            None => head.into_owned(),
        };
        if to.write_all(head.as_bytes()).await.is_err() {
            break None;
        }
    };
    let _ = to.shutdown().await;
    refusal
}

/// The proxy's own `403`, in the daemon's error format.
fn refusal(method: &str, target: &str, why: &str) -> String {
    let body = serde_json::json!({ "message": format!("sockproxy: refused {method} {target}: {why}") }).to_string();
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nX-Sockproxy: refused\r\nConnection: close\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Adds `"network": [network]` to the `filters` of an events request; other
/// requests are returned unchanged. The daemon then sends only that
/// network's events (container events carry no network and are left out).
pub fn narrow_events(head: &str, network: &str) -> String {
    let Some((line, rest)) = head.split_once("\r\n") else {
        return head.to_string();
    };
    let mut parts = line.splitn(3, ' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return head.to_string();
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !path.ends_with("/events") {
        return head.to_string();
    }
    let mut filters = serde_json::json!({});
    let mut params: Vec<String> = Vec::new();
    for p in query.split('&').filter(|p| !p.is_empty()) {
        match p.strip_prefix("filters=") {
            Some(v) => filters = serde_json::from_str(&percent_decode(v)).unwrap_or(filters),
            None => params.push(p.to_string()),
        }
    }
    filters["network"] = serde_json::json!([network]);
    params.push(format!("filters={}", percent_encode(&filters.to_string())));
    format!("{method} {path}?{} {version}\r\n{rest}", params.join("&"))
}

/// Decodes `%XX` escapes and `+` (a query's space).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escapes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (c as char).to_string(),
            _ => format!("%{c:02X}"),
        })
        .collect()
}

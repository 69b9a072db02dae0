//! `CONNECT` (RFC 9110 §9.3.6) and the switch from a request to a tunnel.
//!
//! `CONNECT` asks a proxy for a raw TCP tunnel to the named authority. wharf
//! is a reverse proxy: it refuses `CONNECT` with 405 unless the pool the
//! request's host routes to opts in with `wharf.connect=true`. Then the
//! request goes to one of the pool's backends as it is (authority-form
//! target, `Host`, `X-Forwarded-*` set like any request) and when the backend
//! answers 2xx both connections become a tunnel ([`super::tunnel`]: the
//! tunnel idle timeout, draining, leaving the pool and shutdown apply as to a
//! WebSocket). What the backend does with the tunnel is its business (an
//! egress proxy, a database gateway, …).
//!
//! Only HTTP/1.1 clients: an HTTP/2 `CONNECT` opens a tunnel on one stream
//! (RFC 9113 §8.5), which wharf does not forward (405).
//!
//! [`switch`] decides, from the response head, whether an exchange becomes a
//! tunnel — for `CONNECT` and for `Upgrade` (`101`) alike.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::body::Guard;
use super::{headers, tunnel, Proxy, RespBody};
use crate::model::PoolOptions;

/// May a `CONNECT` in `version` be tunnelled to a pool with these options?
pub fn allowed(version: Version, opts: &PoolOptions) -> bool {
    opts.connect && version == Version::HTTP_11
}

/// What a response head means for the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// An ordinary response.
    No,
    /// The connections become a tunnel.
    Tunnel,
    /// A switch nobody asked for: passing it on would leave the client
    /// speaking HTTP into a tunnel. 502, with this detail.
    Refuse(&'static str),
}

/// `connect`: the request was a `CONNECT`; `upgrade_asked`: it carried an
/// `Upgrade` the client can follow.
pub fn switch(status: StatusCode, connect: bool, upgrade_asked: bool) -> Switch {
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    match (connect, switched) {
        (true, _) if status.is_success() => Switch::Tunnel,
        (true, true) => Switch::Refuse("switched protocols in answer to CONNECT"),
        (false, true) if upgrade_asked => Switch::Tunnel,
        (false, true) => Switch::Refuse("switched protocols without an upgrade request"),
        _ => Switch::No,
    }
}

impl Proxy {
    /// Answer the client with the backend's head (no body) and splice the
    /// two connections once both have switched. The guard keeps the
    /// backend's in-flight slot for the tunnel's life.
    pub(super) fn start_tunnel(
        &self,
        on_client: OnUpgrade,
        mut resp: Response<Incoming>,
        guard: Guard,
        connect: bool,
    ) -> Response<RespBody> {
        let on_backend = hyper::upgrade::on(&mut resp);
        let watch = tunnel::Watch {
            tunnels: Arc::clone(&self.tunnels),
            router: Arc::clone(&self.router),
            idle: self.timeouts.tunnel_idle,
            drain: self.timeouts.drain,
        };
        tokio::spawn(tunnel::tunnel(on_client, on_backend, guard, watch));
        let (mut p, _) = resp.into_parts();
        if connect {
            // A 2xx to CONNECT has no body and no framing (RFC 9110 §9.3.6);
            // `Upgrade`/`Connection` of a 101 must stay, so only here.
            headers::strip_hop_by_hop(&mut p.headers, false);
            p.headers.remove(header::CONTENT_LENGTH);
        }
        Response::from_parts(p, Either::Right(Full::new(Bytes::new())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_tunnels_on_2xx_and_an_upgrade_on_101_and_nothing_else() {
        let s = |code: u16| StatusCode::from_u16(code).unwrap();
        assert_eq!(switch(s(200), true, false), Switch::Tunnel);
        assert_eq!(switch(s(204), true, false), Switch::Tunnel);
        assert_eq!(switch(s(407), true, false), Switch::No);
        assert_eq!(switch(s(502), true, false), Switch::No);
        assert!(matches!(switch(s(101), true, false), Switch::Refuse(_)));
        assert_eq!(switch(s(101), false, true), Switch::Tunnel);
        assert!(matches!(switch(s(101), false, false), Switch::Refuse(_)));
        assert_eq!(
            switch(s(200), false, true),
            Switch::No,
            "an upgrade the backend declined"
        );
        assert_eq!(switch(s(200), false, false), Switch::No);
    }

    #[test]
    fn connect_needs_the_pool_label_and_http11() {
        let on = PoolOptions {
            connect: true,
            ..PoolOptions::default()
        };
        assert!(allowed(Version::HTTP_11, &on));
        assert!(!allowed(Version::HTTP_2, &on));
        assert!(!allowed(Version::HTTP_10, &on));
        assert!(!allowed(Version::HTTP_11, &PoolOptions::default()));
    }
}

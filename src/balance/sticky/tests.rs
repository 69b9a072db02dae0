use std::net::SocketAddr;

use http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};

use super::*;
use crate::balance::round_robin::RoundRobin;
use crate::balance::slow_start::Ramp;
use crate::balance::testing::{ctx, pool};

fn sticky(backends: &[Backend]) -> Sticky {
    Sticky::new(Box::new(RoundRobin::new(backends, Ramp::default())), backends)
}

fn opts() -> crate::model::Sticky {
    crate::model::Sticky { cookie: "srv".into() }
}

/// One request as the proxy makes it: read the cookie, select, pin. Returns
/// the backend and the cookie the client holds afterwards.
fn request(
    lb: &Sticky,
    backends: &[Backend],
    jar: Option<String>,
    eligible: &dyn Fn(usize) -> bool,
) -> (usize, Option<String>) {
    let mut req = HeaderMap::new();
    if let Some(c) = &jar {
        req.insert(
            COOKIE,
            HeaderValue::from_str(&format!("theme=dark; srv={c}")).unwrap_or(HeaderValue::from_static("")),
        );
    }
    let sent = cookie_value(&req, "srv");
    let mut c = ctx();
    c.sticky = sent;
    let i = lb.select(backends, &c, eligible).unwrap_or(usize::MAX);
    let mut resp = HeaderMap::new();
    pin(&mut resp, Some(&opts()), sent, &backends[i].key);
    let set = resp.get(SET_COOKIE).and_then(|v| v.to_str().ok()).map(|v| {
        assert!(v.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{v}");
        let pair = v.split(';').next().unwrap_or_default();
        pair.strip_prefix("srv=").unwrap_or_default().to_string()
    });
    (i, set.or(jar))
}

#[test]
fn a_cookie_round_trip_keeps_the_client_on_its_backend() {
    let backends = pool(&[1, 1, 1]);
    let lb = sticky(&backends);
    let (first, jar) = request(&lb, &backends, None, &|_| true);
    assert!(jar.is_some(), "the first answer sets the cookie");
    for _ in 0..10 {
        let mut resp = HeaderMap::new();
        let (i, again) = request(&lb, &backends, jar.clone(), &|_| true);
        assert_eq!(i, first, "round robin alone would have moved on");
        assert_eq!(again, jar);
        pin(&mut resp, Some(&opts()), jar.as_deref(), &backends[i].key);
        assert!(resp.get(SET_COOKIE).is_none(), "no Set-Cookie when the cookie is right");
    }
}

#[test]
fn when_the_pinned_backend_drains_the_client_moves_and_the_cookie_follows() {
    let backends = pool(&[1, 1, 1]);
    let lb = sticky(&backends);
    let (first, jar) = request(&lb, &backends, None, &|_| true);
    let draining = |i: usize| i != first;
    let (moved, new_jar) = request(&lb, &backends, jar.clone(), &draining);
    assert_ne!(moved, first);
    assert_ne!(new_jar, jar, "the cookie is rewritten");
    // It stays on its new backend, even once the old one is back.
    for _ in 0..5 {
        assert_eq!(request(&lb, &backends, new_jar.clone(), &|_| true).0, moved);
    }
}

#[test]
fn a_cookie_for_a_removed_backend_is_balanced_anew_and_rewritten() {
    let three = pool(&[1, 1, 1]);
    let jar = Some(token_string(&three[2].key));
    let two: Vec<Backend> = three[..2].to_vec();
    let lb = sticky(&two);
    let (i, new_jar) = request(&lb, &two, jar.clone(), &|_| true);
    assert!(i < 2);
    assert_eq!(new_jar, Some(token_string(&two[i].key)));
}

#[test]
fn garbage_cookies_are_ignored() {
    let backends = pool(&[1, 1]);
    let lb = sticky(&backends);
    for junk in ["", "zz", "0123456789abcdefff", "not-a-token-at-all"] {
        let (i, jar) = request(&lb, &backends, Some(junk.into()), &|_| true);
        assert_eq!(jar, Some(token_string(&backends[i].key)), "{junk:?}");
    }
}

#[test]
fn the_token_does_not_reveal_the_address_and_names_one_backend() {
    let backends = pool(&[1, 1, 1]);
    let tokens: Vec<String> = backends.iter().map(|b| token_string(&b.key)).collect();
    for (b, t) in backends.iter().zip(&tokens) {
        assert_eq!(t.len(), 16);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()), "{t}");
        assert!(!t.contains(&b.addr.ip().to_string()));
        let hex_ip: String = match b.addr {
            SocketAddr::V4(a) => a.ip().octets().iter().map(|o| format!("{o:02x}")).collect(),
            SocketAddr::V6(a) => a.ip().octets().iter().map(|o| format!("{o:02x}")).collect(),
        };
        assert!(!t.contains(&hex_ip), "{t} contains {hex_ip}");
        assert_eq!(t, &token_string(&b.key), "stable");
    }
    assert!(tokens[0] != tokens[1] && tokens[1] != tokens[2] && tokens[0] != tokens[2]);
}

#[test]
fn cookie_values_are_found_among_others_in_every_cookie_header() {
    let mut h = HeaderMap::new();
    h.append(COOKIE, HeaderValue::from_static("a=1; xsrv=no"));
    h.append(COOKIE, HeaderValue::from_static("b=2;srv=\"abc\" ; c=3"));
    assert_eq!(cookie_value(&h, "srv"), Some("abc"));
    assert_eq!(cookie_value(&h, "a"), Some("1"));
    assert_eq!(cookie_value(&h, "c"), Some("3"));
    assert_eq!(cookie_value(&h, "d"), None);
    assert_eq!(cookie_value(&HeaderMap::new(), "srv"), None);
}

#[test]
fn a_pool_that_is_not_sticky_sets_no_cookie() {
    let backends = pool(&[1]);
    let mut resp = HeaderMap::new();
    pin(&mut resp, None, None, &backends[0].key);
    assert!(resp.is_empty());
}

use super::*;
use crate::model::{BasicAuth, RateKey, RateLimit};
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use std::time::Duration;

fn peer(s: &str) -> SocketAddr {
    format!("{s}:5000").parse().unwrap()
}

fn basic(user: &str, password: &str) -> HeaderValue {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {token}")).unwrap()
}

#[test]
fn a_pool_without_policies_builds_none() {
    assert!(Policy::build("web", &Policies::default()).is_none());
}

#[tokio::test]
async fn a_denied_client_is_refused_before_it_costs_a_token() {
    let spec = Policies {
        deny: vec!["10.0.0.0/8".parse().unwrap()],
        ratelimit: Some(RateLimit {
            rate: 1,
            period: Duration::from_secs(3600),
            burst: 1,
            by: RateKey::Pool,
        }),
        ..Policies::default()
    };
    let p = Policy::build("web", &spec).unwrap();
    let mut h = HeaderMap::new();
    for _ in 0..3 {
        assert_eq!(
            p.admit(false, &mut h, peer("10.1.1.1"), &[]).await.unwrap_err(),
            Refusal::Forbidden
        );
    }
    assert!(p.admit(false, &mut h, peer("192.168.1.1"), &[]).await.is_ok());
    let refused = p.admit(false, &mut h, peer("192.168.1.1"), &[]).await.unwrap_err();
    assert!(
        matches!(refused, Refusal::RateLimited { retry_after } if retry_after > 3000),
        "{refused:?}"
    );
    assert_eq!(p.stats.denied.load(Ordering::Relaxed), 3);
    assert_eq!(p.stats.limited.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn the_forwarded_address_decides_only_through_a_trusted_proxy() {
    let spec = Policies {
        allow: vec!["203.0.113.0/24".parse().unwrap()],
        ..Policies::default()
    };
    let p = Policy::build("web", &spec).unwrap();
    let mut h = HeaderMap::new();
    h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
    let trusted: Vec<Cidr> = vec!["127.0.0.1".parse().unwrap()];
    assert!(p.admit(false, &mut h, peer("127.0.0.1"), &trusted).await.is_ok());
    assert_eq!(
        p.admit(false, &mut h, peer("127.0.0.1"), &[]).await.unwrap_err(),
        Refusal::Forbidden
    );
}

#[tokio::test]
async fn authorization_is_removed_unless_forwarded_and_request_headers_are_edited() {
    let hash = bcrypt::hash("pw", 4).unwrap();
    let mut spec = Policies {
        auth: Some(BasicAuth {
            users: vec![("ann".into(), hash)],
            file: None,
            forward: false,
            realm: None,
        }),
        request_headers: vec![("x-tenant".into(), "blue".into()), ("x-remove".into(), String::new())],
        ..Policies::default()
    };
    let p = Policy::build("admin", &spec).unwrap();
    let mut h = HeaderMap::new();
    let missing = p.admit(false, &mut h, peer("127.0.0.1"), &[]).await.unwrap_err();
    assert!(
        matches!(&missing, Refusal::Unauthorized { challenge } if challenge.to_str().unwrap().contains("realm=\"admin\""))
    );
    h.insert(http::header::AUTHORIZATION, basic("ann", "pw"));
    h.insert("x-remove", HeaderValue::from_static("1"));
    p.admit(false, &mut h, peer("127.0.0.1"), &[]).await.unwrap();
    assert!(!h.contains_key(http::header::AUTHORIZATION) && !h.contains_key("x-remove"));
    assert_eq!(h["x-tenant"], "blue");

    spec.auth.as_mut().unwrap().forward = true;
    let p = Policy::build("admin", &spec).unwrap();
    let mut h = HeaderMap::new();
    h.insert(http::header::AUTHORIZATION, basic("ann", "pw"));
    p.admit(false, &mut h, peer("127.0.0.1"), &[]).await.unwrap();
    assert!(h.contains_key(http::header::AUTHORIZATION));
}

#[tokio::test]
async fn responses_get_security_headers_then_label_edits_then_compression() {
    let spec = Policies {
        compress: vec![Encoding::Gzip],
        security_headers: true,
        response_headers: vec![
            ("server".into(), String::new()),
            ("x-frame-options".into(), "DENY".into()),
        ],
        ..Policies::default()
    };
    let p = Policy::build("web", &spec).unwrap();
    let mut h = HeaderMap::new();
    h.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
    let shape = p.admit(false, &mut h, peer("127.0.0.1"), &[]).await.unwrap();
    let body = "wharf ".repeat(1000);
    let mut resp = Response::new(Full::new(Bytes::from(body.clone())));
    resp.headers_mut().insert("server", HeaderValue::from_static("nginx"));
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    let out = p.shape(resp, shape);
    assert_eq!(out.headers()["x-frame-options"], "DENY");
    assert_eq!(out.headers()["x-content-type-options"], "nosniff");
    assert!(!out.headers().contains_key("server"));
    assert_eq!(out.headers()["content-encoding"], "gzip");
    let bytes = out.into_body().collect().await.unwrap().to_bytes();
    assert!(bytes.len() < body.len() / 10, "{} bytes", bytes.len());
    assert_eq!(p.stats.compressed.load(Ordering::Relaxed), 1);

    // HEAD and Range requests are never compressed.
    for (head, range) in [(true, false), (false, true)] {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        if range {
            h.insert(http::header::RANGE, HeaderValue::from_static("bytes=0-10"));
        }
        let shape = p.admit(head, &mut h, peer("127.0.0.1"), &[]).await.unwrap();
        let mut resp = Response::new(Full::new(Bytes::from(body.clone())));
        resp.headers_mut()
            .insert("content-type", HeaderValue::from_static("text/plain"));
        assert!(!p.shape(resp, shape).headers().contains_key("content-encoding"));
    }
}

//! Property tests of the pure parsers over generated, hostile inputs:
//! label parsing, Host checks and host extraction, header rewriting and the
//! client-IP scrub, and the clipping of echoed values. Each must never
//! panic, and each keeps its promise whatever the input.

use std::collections::HashMap;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use proptest::prelude::*;

use crate::labels::{self, LabelContext, KNOWN_LABELS};
use crate::proxy::{client_ip, headers, sanity};

/// Any header value bytes HTTP allows (visible ASCII, space, tab, obs-text).
fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..64)
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("connection".to_string()),
        Just("upgrade".to_string()),
        Just("keep-alive".to_string()),
        Just("te".to_string()),
        Just("transfer-encoding".to_string()),
        Just("host".to_string()),
        Just("forwarded".to_string()),
        Just("x-real-ip".to_string()),
        Just("x-forwarded-for".to_string()),
        Just("true-client-ip".to_string()),
        "[a-z][a-z0-9-]{0,20}",
    ]
}

fn header_map() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((name(), value()), 0..12).prop_map(|pairs| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_bytes(&v)) {
                h.append(k, v);
            }
        }
        h
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn label_parsing_never_panics_on_any_known_or_unknown_label(
        entries in proptest::collection::vec(
            (prop_oneof![proptest::sample::select(KNOWN_LABELS.to_vec()).prop_map(str::to_string), "[a-z._]{1,12}"],
             ".{0,40}"),
            0..12),
        ports in proptest::collection::vec(any::<u16>(), 0..3),
        by_default in any::<bool>(),
    ) {
        let map: HashMap<String, String> = entries.into_iter().map(|(k, v)| (format!("wharf.{k}"), v)).collect();
        let ctx = LabelContext { prefix: "wharf", exposed_by_default: by_default, container_name: "c", exposed_ports: &ports };
        let out = labels::parse(&map, &ctx);
        // Whatever came in, nothing echoed back is long.
        if let labels::Parsed::Invalid(errors) = &out.parsed {
            for e in errors {
                prop_assert!(e.value.chars().count() <= 120, "{}", e.value);
            }
        }
        for w in &out.warnings {
            prop_assert!(w.chars().count() <= 260, "{w}");
        }
    }

}

proptest! {
    // Up to 64 KiB each: fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn one_huge_label_value_is_parsed_and_echoed_short(key in proptest::sample::select(KNOWN_LABELS.to_vec()), fill in "[ -~]", n in 1usize..64 * 1024) {
        let mut map = HashMap::new();
        map.insert("wharf.enable".to_string(), "true".to_string());
        map.insert(format!("wharf.{key}"), fill.repeat(n));
        let ctx = LabelContext { prefix: "wharf", exposed_by_default: false, container_name: "c", exposed_ports: &[80] };
        let out = labels::parse(&map, &ctx);
        if let labels::Parsed::Invalid(errors) = &out.parsed {
            for e in errors {
                prop_assert!(e.value.len() <= 200 && e.reason.len() <= 400);
            }
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn host_checks_never_panic_and_a_host_equal_to_the_authority_is_accepted(
        hosts in proptest::collection::vec(value(), 0..3),
        authority in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
        absolute in any::<bool>(),
        h11 in any::<bool>(),
    ) {
        let mut h = HeaderMap::new();
        for v in &hosts {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                h.append(http::header::HOST, v);
            }
        }
        let uri: Uri = if absolute {
            format!("http://{authority}/x").parse().unwrap_or_else(|_| Uri::from_static("/x"))
        } else {
            Uri::from_static("/x")
        };
        let version = if h11 { Version::HTTP_11 } else { Version::HTTP_2 };
        let _ = sanity::check(&Method::GET, version, &uri, &h);
        let _ = headers::request_host(&h, &uri);
        if let Some(a) = uri.authority() {
            let mut same = HeaderMap::new();
            same.insert(http::header::HOST, HeaderValue::from_str(a.as_str()).unwrap());
            prop_assert_eq!(sanity::check(&Method::GET, version, &uri, &same), None);
        }
    }

    #[test]
    fn request_host_is_lowercase_without_a_port(host in "[A-Za-z0-9.-]{1,30}(:[0-9]{1,5})?") {
        let mut h = HeaderMap::new();
        h.insert(http::header::HOST, HeaderValue::from_str(&host).unwrap());
        if let Some(got) = headers::request_host(&h, &Uri::from_static("/")) {
            prop_assert!(!got.bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert!(!got.contains(':'), "{got}");
        }
    }

    #[test]
    fn after_rewriting_no_hop_by_hop_or_connection_named_header_remains(mut h in header_map(), trusted in any::<bool>()) {
        let named: Vec<String> = h
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()).collect::<Vec<_>>())
            .filter(|t| !t.is_empty() && HeaderName::from_bytes(t.as_bytes()).is_ok())
            .collect();
        headers::rewrite_request(&mut h, "10.0.0.1".parse().unwrap(), None, false, trusted);
        if !trusted {
            client_ip::strip_untrusted(&mut h, "10.0.0.1".parse().unwrap());
        }
        for gone in ["connection", "upgrade", "keep-alive", "te", "transfer-encoding", "content-length"] {
            prop_assert!(!h.contains_key(gone), "{gone} survived");
        }
        for n in &named {
            if n != "x-forwarded-for" && n != "x-forwarded-proto" && n != "x-real-ip" {
                prop_assert!(!h.contains_key(n.as_str()), "{n}, named in Connection, survived");
            }
        }
        if !trusted {
            prop_assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
            prop_assert_eq!(&h["x-forwarded-for"], "10.0.0.1");
            for spoofable in &client_ip::SPOOFABLE {
                if let Some(v) = h.get(spoofable) {
                    prop_assert_eq!(spoofable.as_str(), "x-real-ip");
                    prop_assert_eq!(v, "10.0.0.1");
                }
            }
        }
    }

    #[test]
    fn clip_returns_a_prefix_and_bounds_the_length(s in ".{0,300}", max in 0usize..100) {
        let c = crate::text::clip(&s, max);
        if s.chars().count() <= max {
            prop_assert_eq!(c, s);
        } else {
            let kept: String = s.chars().take(max).collect();
            prop_assert!(c.starts_with(&kept));
            prop_assert!(c.chars().count() <= max + 40);
        }
    }
}

use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn addresses_are_written_as_display_writes_them() {
    for ip in [
        "0.0.0.0",
        "1.2.3.4",
        "10.0.0.255",
        "192.168.100.9",
        "255.255.255.255",
        "::1",
        "2001:db8::7",
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(ip_value(ip), ip.to_string().as_str());
    }
    for n in [0u32, 7, 99, 100, 101, 0x0a0b0c0d, 0xfefdfcfb, u32::MAX] {
        let ip = IpAddr::V4(n.into());
        assert_eq!(ip_value(ip), ip.to_string().as_str());
    }
}

#[test]
fn the_kept_ip_value_is_only_reused_for_the_same_address() {
    let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
    for ip in [a, a, b, a, b, b] {
        assert_eq!(ip_value(ip), ip.to_string().as_str());
    }
}

#[test]
fn the_hop_by_hop_index_and_bytes_match_the_list() {
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        assert_eq!(hop_by_hop_index(h.as_str()), Some(i), "{h}");
        assert_eq!(HOP_BY_HOP_BYTES[i], h.as_str().as_bytes(), "{h}");
    }
    assert_eq!(hop_by_hop_index("x-kept"), None);
    assert_eq!(hop_by_hop_index("host"), None);
}

#[test]
fn hop_by_hop_and_connection_named_headers_are_removed() {
    let mut h = map(&[
        ("connection", "keep-alive, x-secret"),
        ("keep-alive", "timeout=5"),
        ("x-secret", "1"),
        ("te", "trailers"),
        ("transfer-encoding", "chunked"),
        ("x-kept", "yes"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 1);
    assert_eq!(h["x-kept"], "yes");
}

#[test]
fn connection_tokens_are_found_through_spaces_tabs_empty_items_and_several_lines_and_close_in_any_case() {
    // `close` is an option, not a header name: a header that happens
    // to be called `close` stays, which shows `CLOSE` was recognised
    // whatever its case. ` x-three ` is found only once trimmed.
    let mut h = map(&[
        ("connection", " Keep-Alive ,\tX-One\t,, x-three "),
        ("connection", "CLOSE,x-TWO"),
        ("x-one", "1"),
        ("x-two", "2"),
        ("x-three", "3"),
        ("close", "a header of that name"),
        ("x-kept", "yes"),
    ]);
    strip_hop_by_hop(&mut h, false);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(h["close"], "a header of that name");
}

#[test]
fn a_whole_keep_alive_or_close_value_names_nothing_and_a_longer_one_is_still_read() {
    let names = |v: &str| {
        let mut named = Vec::new();
        connection_names(&HeaderValue::from_str(v).unwrap(), &mut named);
        named
    };
    for v in ["keep-alive", "Keep-Alive", "close", "CLOSE", ""] {
        assert_eq!(names(v), Vec::<HeaderName>::new(), "{v}");
    }
    assert_eq!(names("keep-alive, x-a"), vec![HeaderName::from_static("x-a")]);
    assert_eq!(names("close,X-B"), vec![HeaderName::from_static("x-b")]);
    assert_eq!(names("keep-alive-x"), vec![HeaderName::from_static("keep-alive-x")]);
}

#[test]
fn upgrade_headers_survive_only_when_asked() {
    let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    assert!(wants_upgrade(&h));
    let mut plain = h.clone();
    strip_hop_by_hop(&mut plain, false);
    assert!(plain.is_empty());
    strip_hop_by_hop(&mut h, true);
    assert_eq!(h["upgrade"], "websocket");
    assert_eq!(h["connection"], "upgrade");
}

#[test]
fn untrusted_peers_cannot_choose_the_forwarded_headers_and_length_is_dropped() {
    let mut h = map(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.test"),
        ("content-length", "5"),
        ("host", "a.test"),
    ]);
    let host = h.get("host").cloned();
    rewrite_request(&mut h, "10.0.0.7".parse().unwrap(), host.as_ref(), false, false);
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-for"], "10.0.0.7");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "a.test");
    assert_eq!(h["host"], "a.test");
    assert!(!h.contains_key("content-length"));
}

#[test]
fn forwarding_leaves_the_values_it_sets_out_of_the_map_and_inserting_them_gives_the_rewritten_map() {
    let sent = map(&[
        ("x-forwarded-for", "6.6.6.6"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "evil.test"),
        ("host", "a.test"),
        ("accept", "*/*"),
    ]);
    let host = sent.get("host").cloned();
    let ip = "10.0.0.7".parse().unwrap();
    for trusted in [false, true] {
        let mut h = sent.clone();
        let (_, fwd) = forwarding(&mut h, ip, host.as_ref(), false, trusted, true);
        // A removal reorders the map: compared sorted.
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        if trusted {
            // The peer's chain is extended; its -Proto and -Host stay.
            assert_eq!(left, ["accept", "host", "x-forwarded-host", "x-forwarded-proto"]);
            assert_eq!(fwd.for_.as_ref().unwrap(), "6.6.6.6, 10.0.0.7");
            assert_eq!((fwd.proto.as_ref(), fwd.host.as_ref()), (None, None));
        } else {
            assert_eq!(left, ["accept", "host"]);
            assert_eq!(fwd.for_.as_ref().unwrap(), "10.0.0.7");
            assert_eq!(fwd.proto.as_ref().unwrap(), "https", "came over TLS");
            assert_eq!(fwd.host.as_ref().unwrap(), "a.test");
        }
        fwd.insert_into(&mut h);
        let expected = match trusted {
            true => map(&[
                ("x-forwarded-for", "6.6.6.6, 10.0.0.7"),
                ("x-forwarded-proto", "http"),
                ("x-forwarded-host", "evil.test"),
                ("host", "a.test"),
                ("accept", "*/*"),
            ]),
            false => map(&[
                ("x-forwarded-for", "10.0.0.7"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "a.test"),
                ("host", "a.test"),
                ("accept", "*/*"),
            ]),
        };
        assert_eq!(h, expected, "trusted: {trusted}");
    }
    // A trusted peer's -Proto that its `Connection` names is gone: wharf's goes.
    let mut h = map(&[("x-forwarded-proto", "http"), ("connection", "x-forwarded-proto")]);
    let (_, fwd) = forwarding(&mut h, ip, host.as_ref(), false, true, true);
    assert_eq!(fwd.proto.unwrap(), "https");
    assert!(h.is_empty());
    // No host to name: none set, and the client's removed.
    let mut h = sent.clone();
    let (_, fwd) = forwarding(&mut h, ip, None, false, false, false);
    assert_eq!(fwd.host, None);
    assert_eq!(fwd.proto.unwrap(), "http");
    assert!(!h.contains_key("x-forwarded-host"));
}

#[test]
fn a_trusted_proxy_keeps_its_chain_and_wharf_appends_the_peer() {
    let mut h = map(&[
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "198.51.100.2, 10.0.0.3"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.test"),
        ("host", "a.test"),
    ]);
    let host = h.get("host").cloned();
    rewrite_request(&mut h, "10.0.0.7".parse().unwrap(), host.as_ref(), false, true);
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.2, 10.0.0.3, 10.0.0.7");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "shop.test");

    // A trusted peer that sent none gets wharf's own, as anyone else.
    let mut bare = map(&[("host", "a.test")]);
    rewrite_request(&mut bare, "10.0.0.7".parse().unwrap(), host.as_ref(), false, true);
    assert_eq!(bare["x-forwarded-for"], "10.0.0.7");
    assert_eq!(bare["x-forwarded-proto"], "http");
    assert_eq!(bare["x-forwarded-host"], "a.test");
}

#[test]
fn host_is_lowercased_without_port_and_falls_back_to_authority() {
    let uri: http::Uri = "/x".parse().unwrap();
    assert_eq!(
        request_host(&map(&[("host", "API.Example.com:8080")]), &uri).as_deref(),
        Some("api.example.com")
    );
    assert_eq!(
        request_host(&map(&[("host", "[::1]:80")]), &uri).as_deref(),
        Some("[::1]")
    );
    for (raw, host) in [
        ("[::1]", "[::1]"),
        ("[2001:db8::1]:8443", "[2001:db8::1]"),
        (":80", ":80"),
        ("a.test:", "a.test"),
        ("a.test:8x", "a.test:8x"),
        ("A.test.:80", "a.test"),
        ("a.test..", "a.test"),
        ("...", ""),
    ] {
        assert_eq!(
            request_host(&map(&[("host", raw)]), &uri).as_deref(),
            Some(host),
            "{raw}"
        );
    }
    let h2: http::Uri = "http://b.test:81/x".parse().unwrap();
    assert_eq!(request_host(&HeaderMap::new(), &h2).as_deref(), Some("b.test"));
    assert_eq!(request_host(&HeaderMap::new(), &uri), None);
}

/// `host_of` as it was before it scanned bytes (issue 9): `rsplit_once`,
/// `trim_end_matches` and a lowercase copy, through `str`'s `char` searches.
fn host_of_in_passes(h: Option<&HeaderValue>, uri: &http::Uri) -> Option<String> {
    let raw = match h.and_then(|h| h.to_str().ok()) {
        Some(h) => h,
        None => uri.authority()?.as_str(),
    };
    let host = match raw.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => raw,
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

#[test]
fn the_byte_scanned_host_matches_the_char_searches_on_every_short_string_of_tricky_bytes() {
    // Every string of up to 4 bytes from bytes that each rule turns on,
    // including one `to_str` refuses (the `Host` is then ignored for the
    // URI's authority) and a tab (which it accepts).
    let alphabet: &[u8] = b"aZ.:7[]\t\xe9";
    let h2: http::Uri = "http://Auth.test.:81/x".parse().unwrap();
    let h1: http::Uri = "/x".parse().unwrap();
    let mut checked = 0;
    let mut word = Vec::new();
    for len in 0..=4u32 {
        for n in 0..alphabet.len().pow(len) {
            word.clear();
            let mut k = n;
            for _ in 0..len {
                word.push(alphabet[k % alphabet.len()]);
                k /= alphabet.len();
            }
            let value = HeaderValue::from_bytes(&word).unwrap();
            for uri in [&h1, &h2] {
                assert_eq!(
                    host_of(Some(&value), uri).map(Cow::into_owned),
                    host_of_in_passes(Some(&value), uri),
                    "{word:?} {uri}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + 9 + 81 + 729 + 6561);
    assert_eq!(host_of(None, &h2).as_deref(), Some("auth.test"));
    assert_eq!(
        host_of(Some(&HeaderValue::from_bytes(b"A.test\xe9").unwrap()), &h1),
        None
    );
}

#[test]
fn strip_prefix_keeps_query_and_leading_slash() {
    assert_eq!(strip_prefix("/api/users?id=1", 4), "/users?id=1");
    assert_eq!(strip_prefix("/api", 4), "/");
    assert_eq!(strip_prefix("/api?x", 4), "/?x");
}

use super::*;

fn parse(bytes: &str, method: Method) -> Result<Option<Head>, HeadError> {
    parse_response(&mut BytesMut::from(bytes), &method, &mut Names::default())
}

fn framed(bytes: &str, method: Method) -> (Framing, bool) {
    let h = parse(bytes, method).unwrap().unwrap();
    (h.framing, h.keep_alive)
}

#[test]
fn a_request_head_is_the_method_the_target_http11_and_every_header_value_in_order() {
    let mut req = Request::new(());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = "/a/b?c=d".parse().unwrap();
    let h = req.headers_mut();
    h.append("host", HeaderValue::from_static("example.com"));
    h.append("accept", HeaderValue::from_static("text/html"));
    h.append("accept", HeaderValue::from_static("*/*"));
    h.append("transfer-encoding", HeaderValue::from_static("chunked"));
    let none = headers::Forwarded::default();
    let mut out = Vec::new();
    encode_request(&req, &none, &mut out, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /a/b?c=d HTTP/1.1\r\nhost: example.com\r\naccept: text/html\r\naccept: */*\r\n\r\n"
    );
    let mut out = Vec::new();
    encode_request(&req, &none, &mut out, true);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET /a/b?c=d HTTP/1.0\r\nhost: example.com\r\naccept: text/html\r\naccept: */*\r\nconnection: keep-alive\r\n\r\n",
        "to a backend that answered in HTTP/1.0 and kept the connection"
    );
}

#[test]
fn a_request_target_that_is_not_origin_form_is_written_as_the_uri_displays() {
    let mut req = Request::new(());
    *req.uri_mut() = "http://example.com/x".parse().unwrap();
    let mut out = Vec::new();
    encode_request(&req, &headers::Forwarded::default(), &mut out, false);
    assert!(out.starts_with(b"GET http://example.com/x HTTP/1.1\r\n"));
}

#[test]
fn the_forwarded_fields_follow_the_request_s_own() {
    let mut req = Request::new(());
    req.headers_mut()
        .append("host", HeaderValue::from_static("example.com"));
    let forwarded = headers::Forwarded {
        for_: Some(HeaderValue::from_static("10.0.0.7")),
        proto: None,
        host: Some(HeaderValue::from_static("example.com")),
    };
    let mut out = Vec::new();
    encode_request(&req, &forwarded, &mut out, false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "GET / HTTP/1.1\r\nhost: example.com\r\nx-forwarded-for: 10.0.0.7\r\nx-forwarded-host: example.com\r\n\r\n"
    );
}

#[test]
fn a_complete_head_is_taken_out_and_the_body_bytes_stay() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nX-A: 2\r\n\r\nhello");
    let h = parse_response(&mut buf, &Method::GET, &mut Names::default())
        .unwrap()
        .unwrap();
    assert_eq!(&buf[..], b"hello");
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.keep_alive);
    assert_eq!(h.response.status(), StatusCode::OK);
    assert_eq!(h.response.version(), Version::HTTP_11);
    let xa: Vec<_> = h.response.headers().get_all("x-a").iter().collect();
    assert_eq!(xa, ["1", "2"]);
    assert!(h.response.extensions().get::<hyper::ext::ReasonPhrase>().is_none());
}

#[test]
fn a_partial_head_asks_for_more_and_leaves_the_buffer_alone() {
    let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Len");
    assert!(parse_response(&mut buf, &Method::GET, &mut Names::default())
        .unwrap()
        .is_none());
    assert_eq!(buf.len(), 28);
}

#[test]
fn informational_heads_are_skipped_but_101_is_not() {
    let mut buf = BytesMut::from(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    );
    let h = parse_response(&mut buf, &Method::GET, &mut Names::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.response.status(), StatusCode::NO_CONTENT);
    assert!(buf.is_empty());
    let (framing, keep) = framed("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", Method::GET);
    assert_eq!(framing, Framing::Empty);
    assert!(!keep, "a switch ends HTTP on the connection");
}

#[test]
fn a_status_line_without_a_reason_or_with_obs_text_in_it_is_read_and_keeps_an_empty_one() {
    for line in ["HTTP/1.1 200\r\n", "HTTP/1.1 200 \r\n", "HTTP/1.1 200 Caf\u{e9}\r\n"] {
        let head = format!("{line}Content-Length: 0\r\nX-Empty:\r\n\r\n");
        let h = parse(&head, Method::GET).unwrap().unwrap();
        assert_eq!(h.response.status(), StatusCode::OK, "{line:?}");
        assert_eq!(h.response.headers()["x-empty"], "", "{line:?}");
        let r = h.response.extensions().get::<hyper::ext::ReasonPhrase>();
        assert_eq!(
            r.map(|r| r.as_bytes()),
            Some(&b""[..]),
            "{line:?}: hyper's client keeps it too"
        );
    }
}

#[test]
fn a_non_canonical_reason_is_kept_for_the_client() {
    let h = parse("HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n", Method::GET)
        .unwrap()
        .unwrap();
    let r = h.response.extensions().get::<hyper::ext::ReasonPhrase>().unwrap();
    assert_eq!(r.as_bytes(), b"Fine Thanks");
}

#[test]
fn framing_follows_rfc9112_as_hypers_client_does() {
    let get = || Method::GET;
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", Method::HEAD).0,
        Framing::Empty
    );
    assert_eq!(
        framed("HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", get()).0,
        Framing::Empty
    );
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", get()),
        (Framing::Empty, true)
    );
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n", get()).0,
        Framing::Length(7)
    );
    assert_eq!(
        framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 000000000000000000000007\r\n\r\n",
            get()
        )
        .0,
        Framing::Length(7)
    );
    assert_eq!(
        framed(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n",
            get()
        ),
        (Framing::Chunked, true)
    );
    assert_eq!(
        framed("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", get()),
        (Framing::Close, false),
        "chunked not last: read to the end, never reused"
    );
    assert_eq!(framed("HTTP/1.1 200 OK\r\n\r\n", get()), (Framing::Close, false));
    assert_eq!(
        framed(
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            get()
        )
        .0,
        Framing::Chunked,
        "Transfer-Encoding overrides even an invalid Content-Length"
    );
    for bad in [
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
    ] {
        assert_eq!(parse(bad, get()).unwrap_err(), HeadError::ContentLength, "{bad}");
    }
    assert_eq!(
        parse("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", get()).unwrap_err(),
        HeadError::TransferEncoding10
    );
    assert!(matches!(
        parse("HTTP/1.1 2x0 OK\r\n\r\n", get()),
        Err(HeadError::Parse(_))
    ));
    assert!(matches!(
        parse("HTTP/1.1 200 OK\r\nA\0: b\r\n\r\n", get()),
        Err(HeadError::Parse(_))
    ));
}

#[test]
fn hop_by_hop_fields_and_those_connection_names_stay_out_of_the_map_but_still_frame_the_body() {
    let head = "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n\
                Transfer-Encoding: chunked\r\nX-Kept: 2\r\nProxy-Connection: x\r\nUpgrade: y\r\nTrailer: z\r\n\r\n";
    let h = parse(head, Method::GET).unwrap().unwrap();
    assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
    let names: Vec<_> = h.response.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-kept"]);
    // Two `Connection` lines, one naming the body's length: the length
    // still frames the body; a value that is not ASCII names nothing.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\
                Connection: x-a\r\nX-A: 1\r\nConnection: x-b, \u{e9}\r\nX-B: 2\r\n\r\n";
    let mut buf = BytesMut::from(head.as_bytes());
    let h = parse_response(&mut buf, &Method::GET, &mut Names::default())
        .unwrap()
        .unwrap();
    assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), true));
    let names: Vec<_> = h.response.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["x-b"], "x-b was named only by a value that is not ASCII");
    let h = parse(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        Method::GET,
    )
    .unwrap()
    .unwrap();
    assert!(!h.keep_alive);
    assert!(!h.response.headers().contains_key("connection"));
}

#[test]
fn keep_alive_follows_the_version_and_every_connection_header() {
    let get = || Method::GET;
    assert!(
        !framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n",
            get()
        )
        .1
    );
    assert!(
        !framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            get()
        )
        .1
    );
    assert!(!framed("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", get()).1);
    assert!(
        framed(
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: Keep-Alive\r\n\r\n",
            get()
        )
        .1
    );
    assert!(
        framed(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: upgrade, x\r\n\r\n",
            get()
        )
        .1
    );
}

#[test]
fn more_than_the_most_header_lines_is_refused() {
    let mut head = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..=MAX_HEADERS {
        head.push_str(&format!("x-{i}: v\r\n"));
    }
    head.push_str("\r\n");
    assert_eq!(
        parse(&head, Method::GET).unwrap_err(),
        HeadError::Parse(httparse::Error::TooManyHeaders)
    );
}

#[test]
fn names_remembered_from_the_last_head_give_the_same_map_and_follow_a_change() {
    let mut names = Names::default();
    let mut next = |head: &str| {
        let mut buf = BytesMut::from(head);
        parse_response(&mut buf, &Method::GET, &mut names)
            .unwrap()
            .unwrap()
            .response
    };
    let first = "HTTP/1.1 200 OK\r\nServer: a\r\nContent-Length: 0\r\nX-Custom: 1\r\n\r\n";
    let a = next(first);
    let b = next(first);
    assert_eq!(a.headers(), b.headers());
    assert_eq!(b.headers()["x-custom"], "1");
    // Another name on line 1, another casing on line 2, one line more.
    let c = next("HTTP/1.1 200 OK\r\nServer: a\r\nX-Other: 2\r\nx-CUSTOM: 3\r\nContent-Length: 0\r\n\r\n");
    let order: Vec<&str> = c.headers().keys().map(|k| k.as_str()).collect();
    assert_eq!(order, ["server", "x-other", "x-custom", "content-length"]);
    assert_eq!(c.headers()["x-other"], "2");
    assert_eq!(c.headers()["x-custom"], "3");
    let d = next(first);
    assert_eq!(d.headers(), a.headers());
    assert!(d.headers().get("x-other").is_none());
    assert_eq!(names.seen.len(), 4, "the longest head's lines");
}

#[test]
fn names_beyond_the_remembered_lines_are_still_read() {
    let mut names = Names::default();
    let mut head = String::from("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n");
    for i in 0..NAMES_KEPT + 4 {
        head.push_str(&format!("x-{i}: {i}\r\n"));
    }
    head.push_str("\r\n");
    for _ in 0..2 {
        let r = parse_response(&mut BytesMut::from(head.as_str()), &Method::GET, &mut names);
        let r = r.unwrap().unwrap().response;
        assert_eq!(r.headers().len(), NAMES_KEPT + 5);
        assert_eq!(
            r.headers()[format!("x-{}", NAMES_KEPT + 3).as_str()],
            (NAMES_KEPT + 3).to_string()
        );
    }
    assert_eq!(names.seen.len(), NAMES_KEPT);
}

#[test]
fn a_long_name_is_read_but_not_remembered() {
    let mut names = Names::default();
    let long = "x".repeat(NAME_KEPT_LEN + 1);
    let head = format!("HTTP/1.1 200 OK\r\n{long}: 1\r\nServer: a\r\n\r\n");
    for _ in 0..2 {
        let r = parse_response(&mut BytesMut::from(head.as_str()), &Method::GET, &mut names);
        let r = r.unwrap().unwrap().response;
        assert_eq!(r.headers()[long.as_str()], "1");
        assert_eq!(r.headers()["server"], "a");
    }
    assert!(names.seen[0].0.is_empty(), "its entry holds no bytes");
    assert_eq!(names.seen[1].0, b"Server");
    assert_eq!(names.seen[1].1, header::SERVER);
}

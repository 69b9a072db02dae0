use super::*;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use std::io::Read;

fn accept(v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
    h
}

fn resp_headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn the_clients_preference_wins_then_wharfs_order() {
    let all = Encoding::ALL;
    assert_eq!(negotiate(&accept("gzip"), all), Some(Encoding::Gzip));
    assert_eq!(negotiate(&accept("gzip, br"), all), Some(Encoding::Br));
    assert_eq!(negotiate(&accept("deflate, gzip, br, zstd"), all), Some(Encoding::Zstd));
    assert_eq!(negotiate(&accept("br;q=0.5, gzip;q=0.8"), all), Some(Encoding::Gzip));
    assert_eq!(negotiate(&accept("*"), all), Some(Encoding::Zstd));
    assert_eq!(negotiate(&accept("*, zstd;q=0"), all), Some(Encoding::Br));
    assert_eq!(negotiate(&accept("gzip;q=0"), all), None);
    assert_eq!(negotiate(&accept("identity"), all), None);
    assert_eq!(negotiate(&HeaderMap::new(), all), None);
    assert_eq!(
        negotiate(&accept("zstd, gzip"), &[Encoding::Gzip]),
        Some(Encoding::Gzip)
    );
}

#[test]
fn only_sizable_unencoded_whole_responses_of_text_types_are_compressed() {
    let ok = StatusCode::OK;
    assert!(worth_compressing(
        ok,
        &resp_headers(&[("content-type", "text/html; charset=utf-8")])
    ));
    assert!(worth_compressing(
        ok,
        &resp_headers(&[("content-type", "application/json"), ("content-length", "5000")])
    ));
    assert!(worth_compressing(
        ok,
        &resp_headers(&[("content-type", "application/problem+json")])
    ));
    let no = |pairs: &[(&str, &str)], status: StatusCode| {
        assert!(!worth_compressing(status, &resp_headers(pairs)), "{pairs:?}")
    };
    no(&[("content-type", "image/png")], ok);
    no(&[("content-type", "application/octet-stream")], ok);
    no(&[("content-type", "text/event-stream")], ok);
    no(&[("content-type", "text/plain"), ("content-length", "100")], ok);
    no(&[("content-type", "text/plain"), ("content-encoding", "gzip")], ok);
    no(
        &[
            ("content-type", "text/plain"),
            ("cache-control", "public, no-transform"),
        ],
        ok,
    );
    no(
        &[("content-type", "text/plain"), ("content-range", "bytes 0-9/100")],
        ok,
    );
    no(&[("content-type", "text/plain")], StatusCode::PARTIAL_CONTENT);
    no(&[("content-type", "text/plain")], StatusCode::NO_CONTENT);
    no(&[("content-type", "text/plain")], StatusCode::NOT_MODIFIED);
    no(&[], ok);
}

#[tokio::test]
async fn headers_follow_the_encoding() {
    let mut resp = Response::new(Full::new(Bytes::from_static(b"hello hello hello")));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("17"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, HeaderValue::from_static("\"abc\""));
    h.insert(header::VARY, HeaderValue::from_static("origin"));
    let out = compress(resp, Encoding::Gzip);
    let h = out.headers();
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    assert!(!h.contains_key(header::CONTENT_LENGTH) && !h.contains_key(header::ACCEPT_RANGES));
    assert_eq!(h[header::ETAG], "W/\"abc\"");
    let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
    assert_eq!(vary, ["origin", "accept-encoding"]);
}

fn decode(enc: Encoding, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match enc {
        Encoding::Gzip => flate2::read::GzDecoder::new(data).read_to_end(&mut out).unwrap(),
        Encoding::Br => brotli::Decompressor::new(data, 4096).read_to_end(&mut out).unwrap(),
        Encoding::Zstd => zstd::stream::read::Decoder::new(data)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
    };
    out
}

async fn roundtrip(enc: Encoding, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, std::io::Error>(Frame::data(Bytes::from(c))));
    let body = StreamBody::new(futures::stream::iter(frames));
    let compressed = encode(body, enc).collect().await.unwrap().to_bytes();
    decode(enc, &compressed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn every_encoding_round_trips_any_body_in_any_chunking(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..8),
        which in 0usize..3,
    ) {
        let enc = Encoding::ALL[which];
        let want: Vec<u8> = chunks.concat();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let got = rt.block_on(roundtrip(enc, chunks));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn negotiation_never_picks_an_encoding_the_client_refused_or_wharf_did_not_offer(
        items in proptest::collection::vec((0usize..5, 0u32..=1000), 0..6),
        offered_mask in 0u8..8,
    ) {
        let names = ["gzip", "br", "zstd", "*", "identity"];
        let value: Vec<String> = items.iter().map(|(i, q)| format!("{};q={}", names[*i], *q as f64 / 1000.0)).collect();
        let offered: Vec<Encoding> = Encoding::ALL.iter().enumerate().filter(|(i, _)| offered_mask & (1 << i) != 0).map(|(_, e)| *e).collect();
        let h = accept(&value.join(", "));
        if let Some(e) = negotiate(&h, &offered) {
            prop_assert!(offered.contains(&e));
            prop_assert!(accepted_q(&h, e.as_str()) > 0);
        }
    }
}

//! Request ids: `X-Request-Id`, so one request can be followed from the
//! client's log through wharf's access log to the backend's.
//!
//! An incoming id is kept when it is sane — 1 to [`MAX_LEN`] bytes of visible
//! ASCII (`!` … `~`, no spaces, no control characters: safe to log and to
//! pass on) — and replaced otherwise. A new id is 20 lowercase hex digits:
//! the first 8 are random per thread (drawn once), the last 12 a per-thread
//! counter (kept as its hex digits and counted up in them), so generating
//! one costs a few byte operations, with no lock and no shared state between
//! workers. Ids are unique within a thread
//! for 2^48 requests, and across threads and restarts with high probability.
//!
//! A new id goes into the upstream request and into the response: two
//! copies of one header value. Written each into its own `Vec` it would cost
//! an allocation, and its first clone another (`Bytes` turns a `Vec` into a
//! shared buffer on first clone). Ids are therefore cut from a per-thread
//! block of [`BLOCK`] ids that is shared from the start: one allocation per
//! block, and a clone is a reference count.

use std::cell::{Cell, RefCell};

use bytes::BytesMut;
use http::header::{Entry, HeaderMap, HeaderName, HeaderValue};

pub static HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept.
pub const MAX_LEN: usize = 128;

/// Is an incoming id kept as it is?
pub fn is_sane(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= MAX_LEN && v.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// Ids per block of memory (20 bytes each): a block is freed when the last
/// of its ids is dropped.
const BLOCK: usize = 64;
const ID_LEN: usize = 20;

thread_local! {
    /// This thread's next id: its random prefix (drawn once), then its counter.
    static NEXT: Cell<[u8; ID_LEN]> = Cell::new(format_id(rand::random::<u32>(), 0));
    /// The rest of this thread's current block.
    static IDS: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A new id (see the module docs).
pub fn generate() -> HeaderValue {
    let next = NEXT.with(|c| {
        let id = c.get();
        c.set(increment(id));
        id
    });
    let id = IDS.with(|block| {
        let mut block = block.borrow_mut();
        if block.capacity() < ID_LEN {
            *block = BytesMut::with_capacity(ID_LEN * BLOCK);
        }
        block.extend_from_slice(&next);
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).expect("hex digits are a valid header value")
}

/// `id` with its counter (the last 12 hex digits) one higher, wrapping at
/// 2^48: `format_id(p, n + 1)` from `format_id(p, n)`, one digit and a
/// carry at a time instead of 20 digits written anew (about 80 instructions
/// fewer per request; issue 9).
fn increment(mut id: [u8; ID_LEN]) -> [u8; ID_LEN] {
    for d in id[8..].iter_mut().rev() {
        match *d {
            b'9' => {
                *d = b'a';
                return id;
            }
            b'f' => *d = b'0',
            _ => {
                *d += 1;
                return id;
            }
        }
    }
    id
}

/// `prefix` as 8 hex digits, then the low 48 bits of `n` as 12.
fn format_id(prefix: u32, n: u64) -> [u8; 20] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 20];
    for (i, o) in out[..8].iter_mut().enumerate() {
        *o = HEX[(prefix >> (28 - 4 * i)) as usize & 0xf];
    }
    for (i, o) in out[8..].iter_mut().enumerate() {
        *o = HEX[(n >> (44 - 4 * i)) as usize & 0xf];
    }
    out
}

/// The request's id: the client's if sane, else a new one written into
/// `headers`. One lookup (`entry`), not a `get` and then an `insert`
/// (`entry` makes room for one more field first, as `insert` did: a map
/// that is exactly full grows even when the client's id is kept).
pub fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    match headers.entry(&HEADER) {
        Entry::Occupied(mut kept) => {
            if is_sane(kept.get().as_bytes()) && kept.iter().nth(1).is_none() {
                return kept.get().clone();
            }
            let id = generate();
            // Replaces every value the client sent.
            kept.insert(id.clone());
            id
        }
        Entry::Vacant(slot) => {
            let id = generate();
            slot.insert(id.clone());
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sane_incoming_id_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(&HEADER, HeaderValue::from_static("abc-123_XYZ.9"));
        assert_eq!(ensure(&mut h), "abc-123_XYZ.9");
        assert_eq!(h[&HEADER], "abc-123_XYZ.9");
    }

    #[test]
    fn an_id_with_spaces_or_too_long_or_repeated_is_replaced() {
        for bad in ["has space", "", &"x".repeat(MAX_LEN + 1)] {
            let mut h = HeaderMap::new();
            h.insert(&HEADER, HeaderValue::from_str(bad).unwrap());
            let id = ensure(&mut h);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 20);
            assert_eq!(h[&HEADER], id);
        }
        let mut h = HeaderMap::new();
        h.append(&HEADER, HeaderValue::from_static("one"));
        h.append(&HEADER, HeaderValue::from_static("two"));
        let id = ensure(&mut h);
        assert_eq!(id.len(), 20);
        assert_eq!(h.get_all(&HEADER).iter().count(), 1, "one id goes on");
        assert!(is_sane(&[b'~'; MAX_LEN]));
        assert!(!is_sane(b"caf\xc3\xa9"));
    }

    #[test]
    fn generated_ids_are_hex_and_distinct_within_and_across_threads() {
        assert_eq!(&format_id(0xdeadbeef, 0x1_0000_0000_0001), b"deadbeef000000000001");
        assert_eq!(&increment(*b"deadbeef00000000000f"), b"deadbeef000000000010");
        let mine: Vec<HeaderValue> = (0..1000).map(|_| generate()).collect();
        let theirs: Vec<HeaderValue> = std::thread::spawn(|| (0..1000).map(|_| generate()).collect())
            .join()
            .unwrap();
        let all: std::collections::HashSet<_> = mine.iter().chain(&theirs).collect();
        assert_eq!(all.len(), 2000);
        assert!(mine
            .iter()
            .all(|v| v.len() == 20 && v.as_bytes().iter().all(u8::is_ascii_hexdigit)));
    }

    #[test]
    fn an_id_counted_up_digit_by_digit_is_the_id_of_the_next_number() {
        let edges = [
            0u64,
            8,
            9,
            0xf,
            0x9f,
            0xff,
            0x9ff,
            0xfff_ffff,
            0xffff_ffff_fffe,
            0xffff_ffff_ffff,
        ];
        let around = edges
            .iter()
            .flat_map(|&n| (0..40u64).map(move |d| n.wrapping_sub(20).wrapping_add(d)));
        for n in around.chain((0..20_000).map(|i| i * 7_919)) {
            let n = n & 0xffff_ffff_ffff;
            assert_eq!(
                increment(format_id(0x0123_abcd, n)),
                format_id(0x0123_abcd, n + 1),
                "after {n:#x}"
            );
        }
    }
}

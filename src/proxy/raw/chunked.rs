//! Decoding a chunked body (RFC 9112 §7.1) from the bytes read so far: a
//! pure state machine, fed by [`super::body`].
//!
//! Strict where laxness has let responses be split, as hyper is: sizes are
//! hex without sign or leading spaces and fit in 64 bits; every line ends in
//! CRLF and holds no other CR; a size line, with its extensions (skipped),
//! is at most 4 KiB; trailer fields are parsed as a header block (at most
//! 100 fields, 16 KiB) and passed on, as hyper passes them.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The longest chunk-size line (with its extensions), and the longest
/// trailer section, that wharf reads.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then the final CRLF.
    Trailers,
    Done,
}

#[derive(Debug)]
pub struct Decoder {
    state: State,
}

/// One step of decoding.
#[derive(Debug, PartialEq)]
pub enum Step {
    Data(Bytes),
    /// The body ended, with its trailer fields if it had any.
    End(Option<HeaderMap>),
    /// More bytes must be read first.
    More,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid chunked body from the backend: {0}")]
pub struct ChunkError(&'static str);

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size }
    }
}

impl Decoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Take what can be decoded from the front of `buf`.
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Step::End(None)),
                State::Size => {
                    let Some(line) = line(buf, MAX_LINE)? else {
                        return Ok(Step::More);
                    };
                    let size = chunk_size(&line)?;
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = (buf.len() as u64).min(left);
                    self.state = if n == left {
                        State::DataEnd
                    } else {
                        State::Data(left - n)
                    };
                    return Ok(Step::Data(buf.split_to(n as usize).freeze()));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("no CRLF after a chunk"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::Size;
                }
                State::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        let _ = buf.split_to(2);
                        self.state = State::Done;
                        return Ok(Step::End(None));
                    }
                    let Some(end) = find(buf, b"\r\n\r\n") else {
                        if buf.len() > MAX_TRAILERS {
                            return Err(ChunkError("trailer section too long"));
                        }
                        return Ok(Step::More);
                    };
                    let block = buf.split_to(end + 4);
                    self.state = State::Done;
                    return Ok(Step::End(Some(trailers(&block)?)));
                }
            }
        }
    }
}

/// The line at the front of `buf`, without its CRLF, taken out of `buf`.
/// A CR anywhere but before the LF is refused, as in hyper.
fn line(buf: &mut BytesMut, max: usize) -> Result<Option<BytesMut>, ChunkError> {
    match buf[..buf.len().min(max + 1)].iter().position(|&b| b == b'\n') {
        Some(lf) if lf == 0 || buf[lf - 1] != b'\r' => Err(ChunkError("a line ends without CRLF")),
        Some(lf) if lf > max => Err(ChunkError("chunk-size line too long")),
        Some(lf) if buf[..lf - 1].contains(&b'\r') => Err(ChunkError("a CR inside a line")),
        Some(lf) => {
            let mut l = buf.split_to(lf + 1);
            l.truncate(lf - 1);
            Ok(Some(l))
        }
        None if buf.len() > max => Err(ChunkError("chunk-size line too long")),
        None => Ok(None),
    }
}

/// `1a;name=value` → 26. After the digits only spaces and tabs, then a
/// `;` and the extensions (skipped) or the end.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let bad = ChunkError("bad chunk size");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count()..];
    if digits == 0 || !(rest.is_empty() || rest[0] == b';') {
        return Err(bad);
    }
    let hex = |b: u8| u64::from((b as char).to_digit(16).unwrap_or(0));
    line[..digits]
        .iter()
        .try_fold(0u64, |n, &b| (n >> 60 == 0).then(|| n << 4 | hex(b)))
        .ok_or(bad)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn trailers(block: &[u8]) -> Result<HeaderMap, ChunkError> {
    let mut lines = [httparse::EMPTY_HEADER; super::head::MAX_HEADERS];
    let bad = ChunkError("bad trailer fields");
    let Ok(httparse::Status::Complete((_, fields))) = httparse::parse_headers(block, &mut lines) else {
        return Err(bad);
    };
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| bad)?;
        let value = HeaderValue::from_bytes(f.value).map_err(|_| bad)?;
        map.append(name, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The data, the trailers, and the bytes fed but not consumed.
    type Decoded = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

    /// Decode `input` fed `split` bytes at a time: the data, the trailers,
    /// and the bytes fed but not consumed.
    fn decode(input: &[u8], split: usize) -> Result<Decoded, ChunkError> {
        let mut d = Decoder::default();
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut data = Vec::new();
        loop {
            match d.step(&mut buf)? {
                Step::Data(b) => data.extend_from_slice(&b),
                Step::End(t) => return Ok((data, t, buf.to_vec())),
                Step::More => {
                    assert!(fed < input.len(), "more asked for after all input");
                    let n = split.min(input.len() - fed);
                    buf.extend_from_slice(&input[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunks_decode_alike_whatever_the_read_sizes_and_what_follows_stays() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \t;x\r\n0123456789\r\n000\r\n\r\nNEXT";
        let end = body.len() - 4;
        for split in [1, 2, 3, 7, 64] {
            let (data, t, left) = decode(body, split).unwrap();
            assert_eq!(data, b"hello 0123456789", "split {split}");
            assert!(t.is_none());
            // What follows the body stays: exactly the bytes of `NEXT` that
            // came with the read that ended the body.
            let fed = body.len().min(end.div_ceil(split) * split);
            assert_eq!(left, &body[end..fed], "split {split}");
        }
    }

    #[test]
    fn trailer_fields_are_passed_on() {
        let (data, t, _) = decode(b"3\r\nabc\r\n0\r\nX-Sum: 9\r\nX-B: 1\r\n\r\n", 5).unwrap();
        assert_eq!(data, b"abc");
        let t = t.unwrap();
        assert_eq!(t["x-sum"], "9");
        assert_eq!(t["x-b"], "1");
    }

    #[test]
    fn sizes_are_hex_up_to_64_bits_with_any_leading_zeros_and_a_line_may_fill_the_limit() {
        assert_eq!(chunk_size(b"00000000000000000005"), Ok(5));
        assert_eq!(chunk_size(b"ffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(chunk_size(b"1A \t;a=b"), Ok(26));
        let mut buf = BytesMut::from(&b"5;"[..]);
        buf.extend_from_slice(&vec![b'x'; MAX_LINE - 3]);
        buf.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let mut d = Decoder::default();
        assert_eq!(d.step(&mut buf), Ok(Step::Data(Bytes::from_static(b"hello"))));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b" 5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n",
            b"5\r\r\nhello\r\n",
            b"5;a\rb\r\nhello\r\n",
            b"5\x0c\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"0\r\nnot a field\r\n\r\n",
        ] {
            assert!(decode(bad, 64).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn a_size_line_or_trailer_section_too_long_is_refused_with_or_without_its_end() {
        let long = vec![b'1'; 16].into_iter().chain(std::iter::repeat_n(b';', MAX_LINE));
        let mut buf: BytesMut = long.collect::<Vec<u8>>().as_slice().into();
        assert!(Decoder::default().step(&mut buf).is_err(), "no end in sight");
        buf.clear();
        buf.extend_from_slice(b"1;");
        buf.extend_from_slice(&[b'x'; MAX_LINE]);
        buf.extend_from_slice(b"\r\n");
        assert!(Decoder::default().step(&mut buf).is_err(), "its end came with it");
        let mut d = Decoder { state: State::Trailers };
        let mut buf = BytesMut::from(&[b'a'; MAX_TRAILERS + 1][..]);
        assert!(d.step(&mut buf).is_err());
    }
}

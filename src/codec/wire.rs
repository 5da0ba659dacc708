//! The Confluent wire format: magic byte `0`, a 4-byte big-endian schema id, then the Avro
//! binary body (no container-file header, no sync markers).

use std::io::{self, Read};

use super::error::DecodeError;

/// The Confluent magic byte.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the Confluent header: magic byte + 4-byte schema id.
pub const HEADER_LEN: usize = 5;

/// Reads the Confluent header: the writer schema id and the Avro body.
///
/// Errors: [`DecodeError::Empty`], [`DecodeError::TooShort`] (fewer than 5 bytes),
/// [`DecodeError::WrongMagic`]. Does not look the id up.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [] => Err(DecodeError::Empty),
        [magic, ..] if *magic != MAGIC_BYTE => Err(DecodeError::WrongMagic { found: *magic }),
        [_, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        _ => Err(DecodeError::TooShort { len: bytes.len() }),
    }
}

/// Starts a Confluent frame for `schema_id`: the 5 header bytes, with room for `body_hint`
/// more.
pub fn frame_header(schema_id: u32, body_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body_hint);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out
}

/// A `Read` over the Avro body that remembers whether the decoder ever ran out of input.
///
/// apache-avro 0.22 turns end-of-input inside a string, boolean or union index into a `null`
/// value instead of an error; this flag lets the codec report truncation as such.
pub(crate) struct BodyReader<'a> {
    rest: &'a [u8],
    hit_end: bool,
}

impl<'a> BodyReader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> BodyReader<'a> {
        BodyReader {
            rest: body,
            hit_end: false,
        }
    }

    /// True if a read asked for more bytes than were left.
    pub(crate) fn hit_end(&self) -> bool {
        self.hit_end
    }

    /// Bytes not consumed by the decoder.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.rest.is_empty() {
            self.hit_end = true;
            return Ok(0);
        }
        let n = buf.len().min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        buf[..n].copy_from_slice(head);
        self.rest = tail;
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        if buf.len() > self.rest.len() {
            self.hit_end = true;
            self.rest = &[];
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let (head, tail) = self.rest.split_at(buf.len());
        buf.copy_from_slice(head);
        self.rest = tail;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut framed = frame_header(0x0102_0304, 2);
        framed.extend_from_slice(&[9, 8]);
        assert_eq!(framed, [0, 1, 2, 3, 4, 9, 8]);
        assert_eq!(split_frame(&framed), Ok((0x0102_0304, &[9u8, 8][..])));
        assert_eq!(split_frame(&framed[..5]), Ok((0x0102_0304, &[][..])));
    }

    #[test]
    fn header_errors() {
        assert_eq!(split_frame(&[]), Err(DecodeError::Empty));
        assert_eq!(
            split_frame(&[0, 0, 1]),
            Err(DecodeError::TooShort { len: 3 })
        );
        assert_eq!(
            split_frame(&[1, 0, 0, 0, 1, 2]),
            Err(DecodeError::WrongMagic { found: 1 })
        );
        // a JSON value is the classic wrong-magic case
        assert_eq!(
            split_frame(b"{\"a\":1}"),
            Err(DecodeError::WrongMagic { found: b'{' })
        );
    }

    #[test]
    fn body_reader_flags_truncation() {
        let mut r = BodyReader::new(&[1, 2, 3]);
        let mut two = [0u8; 2];
        r.read_exact(&mut two).unwrap();
        assert!(!r.hit_end());
        assert_eq!(r.remaining(), 1);
        assert!(r.read_exact(&mut two).is_err());
        assert!(r.hit_end());
        assert_eq!(r.remaining(), 0);
    }
}

//! A strict DER reader: just enough ASN.1 for the certificates of libp2p-tls.
//!
//! It reads definite, minimally encoded lengths of at most four bytes and single-byte tags, and
//! hands out sub-slices of the input: nothing is copied and nothing is allocated, so a length
//! the peer claims is checked against the bytes that are there before anything uses it.

/// Tag of a BOOLEAN.
pub(super) const BOOLEAN: u8 = 0x01;
/// Tag of an INTEGER.
pub(super) const INTEGER: u8 = 0x02;
/// Tag of a BIT STRING.
pub(super) const BIT_STRING: u8 = 0x03;
/// Tag of an OCTET STRING.
pub(super) const OCTET_STRING: u8 = 0x04;
/// Tag of an OBJECT IDENTIFIER.
pub(super) const OID: u8 = 0x06;
/// Tag of a UTCTime.
pub(super) const UTC_TIME: u8 = 0x17;
/// Tag of a GeneralizedTime.
pub(super) const GENERALIZED_TIME: u8 = 0x18;
/// Tag of a SEQUENCE (constructed).
pub(super) const SEQUENCE: u8 = 0x30;

/// Tag of the context-specific, constructed field `[n]`.
pub(super) const fn explicit(n: u8) -> u8 {
    0xa0 | n
}

/// Tag of the context-specific, primitive field `[n]`.
pub(super) const fn implicit(n: u8) -> u8 {
    0x80 | n
}

/// Why DER could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DerError {
    /// The input ended inside an element.
    #[error("DER ends inside an element")]
    Truncated,
    /// An element other than the one expected.
    #[error("unexpected DER element: tag {found:#04x} where {expected:#04x} belongs")]
    UnexpectedTag {
        /// The tag the structure calls for.
        expected: u8,
        /// The tag that was there.
        found: u8,
    },
    /// A length that is indefinite, not minimal, or longer than four bytes; or a multi-byte tag.
    #[error("DER element with a non-canonical tag or length")]
    NonCanonical,
    /// Bytes after the last element of a structure.
    #[error("trailing bytes after a DER structure")]
    TrailingData,
    /// An element whose content is invalid for its type (a BOOLEAN of two bytes, a BIT STRING
    /// with unused bits, an impossible date).
    #[error("invalid DER content")]
    InvalidContent,
}

/// One element: its tag, its content and the whole encoding (tag, length and content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Element<'a> {
    pub(super) tag: u8,
    pub(super) content: &'a [u8],
    pub(super) raw: &'a [u8],
}

/// Reads elements one after the other from a slice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// Whether every element was read.
    pub(super) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fails unless every element was read.
    pub(super) fn finish(&self) -> Result<(), DerError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }

    /// The tag of the next element, if there is one.
    pub(super) fn peek_tag(&self) -> Option<u8> {
        self.data.first().copied()
    }

    /// Reads the next element, whatever its tag.
    pub(super) fn element(&mut self) -> Result<Element<'a>, DerError> {
        let (&tag, rest) = self.data.split_first().ok_or(DerError::Truncated)?;
        if tag & 0x1f == 0x1f {
            return Err(DerError::NonCanonical);
        }
        let (&first, mut rest) = rest.split_first().ok_or(DerError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(DerError::NonCanonical);
            }
            let (bytes, after) = rest.split_at_checked(n).ok_or(DerError::Truncated)?;
            rest = after;
            if bytes[0] == 0 {
                return Err(DerError::NonCanonical);
            }
            let len = bytes.iter().fold(0usize, |l, &b| (l << 8) | usize::from(b));
            if len < 0x80 {
                return Err(DerError::NonCanonical);
            }
            len
        };
        let header = self.data.len() - rest.len();
        let content = rest.get(..len).ok_or(DerError::Truncated)?;
        let (raw, after) = self.data.split_at(header + len);
        self.data = after;
        Ok(Element { tag, content, raw })
    }

    /// Reads the next element, which must carry `tag`.
    pub(super) fn expect(&mut self, tag: u8) -> Result<Element<'a>, DerError> {
        let found = self.peek_tag().ok_or(DerError::Truncated)?;
        if found != tag {
            return Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            });
        }
        self.element()
    }

    /// The content of the next element, which must carry `tag`.
    pub(super) fn content(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        Ok(self.expect(tag)?.content)
    }

    /// A reader over the content of the next element, which must carry `tag`.
    pub(super) fn nested(&mut self, tag: u8) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.content(tag)?))
    }

    /// The next element if it carries `tag`; nothing is read otherwise.
    pub(super) fn optional(&mut self, tag: u8) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.element().map(Some)
        } else {
            Ok(None)
        }
    }

    /// A BIT STRING without unused bits (keys and signatures), as bytes.
    pub(super) fn bit_string_bytes(&mut self) -> Result<&'a [u8], DerError> {
        match self.content(BIT_STRING)? {
            [0, bytes @ ..] => Ok(bytes),
            _ => Err(DerError::InvalidContent),
        }
    }

    /// An optional BOOLEAN that defaults to false.
    pub(super) fn boolean_or_false(&mut self) -> Result<bool, DerError> {
        match self.optional(BOOLEAN)? {
            None => Ok(false),
            Some(e) => match e.content {
                [0x00] => Ok(false),
                [0xff] => Ok(true),
                _ => Err(DerError::InvalidContent),
            },
        }
    }

    /// A UTCTime or GeneralizedTime in the forms RFC 5280 allows (`YYMMDDHHMMSSZ`,
    /// `YYYYMMDDHHMMSSZ`), as seconds since the Unix epoch.
    pub(super) fn time(&mut self) -> Result<i64, DerError> {
        let e = self.element()?;
        let digits = |s: &[u8]| -> Result<i64, DerError> {
            s.iter().try_fold(0i64, |v, &b| {
                if b.is_ascii_digit() {
                    Ok(v * 10 + i64::from(b - b'0'))
                } else {
                    Err(DerError::InvalidContent)
                }
            })
        };
        let (year, rest) = match (e.tag, e.content.len()) {
            (UTC_TIME, 13) => {
                // RFC 5280 4.1.2.5.1: 50–99 are 19xx, 00–49 are 20xx.
                let yy = digits(&e.content[..2])?;
                (
                    if yy >= 50 { 1900 + yy } else { 2000 + yy },
                    &e.content[2..],
                )
            }
            (GENERALIZED_TIME, 15) => (digits(&e.content[..4])?, &e.content[4..]),
            (UTC_TIME | GENERALIZED_TIME, _) => return Err(DerError::InvalidContent),
            (found, _) => {
                return Err(DerError::UnexpectedTag {
                    expected: UTC_TIME,
                    found,
                });
            }
        };
        if rest[10] != b'Z' {
            return Err(DerError::InvalidContent);
        }
        let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
        let (month, day, hour, minute, second) = (month?, day?, hour?, minute?, second?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(DerError::InvalidContent);
        }
        Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given date of the proleptic Gregorian calendar (H. Hinnant's
/// algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Appends one element: `tag`, the minimal length, `content`.
pub(super) use crate::transport::certificate::write;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lengths_must_be_minimal_and_definite() {
        assert_eq!(
            Reader::new(&[0x04, 0x80]).element(),
            Err(DerError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).element(),
            Err(DerError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).element(),
            Err(DerError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x85, 1, 0, 0, 0, 0]).element(),
            Err(DerError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x1f, 0x01, 0x00]).element(),
            Err(DerError::NonCanonical)
        );
    }

    #[test]
    fn a_claimed_length_past_the_input_is_truncated() {
        assert_eq!(
            Reader::new(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff, 0]).element(),
            Err(DerError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x03, 1, 2]).element(),
            Err(DerError::Truncated)
        );
    }

    #[test]
    fn times_read_as_unix_seconds() {
        let mut out = Vec::new();
        write(&mut out, UTC_TIME, b"750101130000Z");
        write(&mut out, GENERALIZED_TIME, b"40960101130000Z");
        write(&mut out, UTC_TIME, b"000229000000Z");
        write(&mut out, UTC_TIME, b"010229000000Z");
        let mut r = Reader::new(&out);
        assert_eq!(r.time(), Ok(157_813_200));
        assert_eq!(r.time(), Ok(67_090_165_200));
        assert_eq!(r.time(), Ok(951_782_400));
        assert_eq!(r.time(), Err(DerError::InvalidContent));
    }

    #[test]
    fn booleans_and_bit_strings_are_strict() {
        let mut r = Reader::new(&[0x01, 0x01, 0x01]);
        assert_eq!(r.boolean_or_false(), Err(DerError::InvalidContent));
        let mut r = Reader::new(&[0x03, 0x02, 0x01, 0xfe]);
        assert_eq!(r.bit_string_bytes(), Err(DerError::InvalidContent));
        let mut r = Reader::new(&[0x03, 0x02, 0x00, 0xfe]);
        assert_eq!(r.bit_string_bytes(), Ok(&[0xfe][..]));
    }

    proptest! {
        #[test]
        fn written_elements_read_back(
            items in proptest::collection::vec(
                (0u8..0x1f, proptest::collection::vec(any::<u8>(), 0..600)),
                0..6,
            )
        ) {
            let mut out = Vec::new();
            for (tag, content) in &items {
                write(&mut out, *tag, content);
            }
            let mut r = Reader::new(&out);
            for (tag, content) in &items {
                let e = r.element().expect("a written element reads back");
                prop_assert_eq!(e.tag, *tag);
                prop_assert_eq!(e.content, &content[..]);
            }
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            for _ in 0..64 {
                if r.element().is_err() {
                    break;
                }
            }
            let _ = Reader::new(&data).time();
        }
    }
}

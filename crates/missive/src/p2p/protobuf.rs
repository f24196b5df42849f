//! The few protobuf wire rules libp2p's small messages need (Noise payload, identify):
//! length-delimited fields written, and every wire type read and skipped safely.

use super::identity::{read_uvarint, write_uvarint};

/// A field's value as read off the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    /// Wire type 2: bytes, strings and embedded messages.
    Bytes(&'a [u8]),
    /// Wire type 0.
    Varint(u64),
    /// Wire types 1 and 5: fixed-width numbers, which no libp2p message here uses.
    Fixed,
}

/// Why a protobuf message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtobufError {
    /// A key, length or value runs past the end of the message.
    Truncated,
    /// Wire types 3, 4 (groups), 6 and 7 are not accepted.
    WireType(u64),
}

impl ProtobufError {
    /// A short description for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            ProtobufError::Truncated => "truncated protobuf field",
            ProtobufError::WireType(_) => "unsupported protobuf wire type",
        }
    }
}

/// Reads the field at the start of `buf`: its number, its value and what follows it.
pub(crate) fn next_field(buf: &[u8]) -> Result<(u64, Value<'_>, &[u8]), ProtobufError> {
    let (key, rest) = read_uvarint(buf).ok_or(ProtobufError::Truncated)?;
    let field = key >> 3;
    match key & 7 {
        0 => {
            let (v, rest) = read_uvarint(rest).ok_or(ProtobufError::Truncated)?;
            Ok((field, Value::Varint(v), rest))
        }
        1 => {
            let rest = rest.get(8..).ok_or(ProtobufError::Truncated)?;
            Ok((field, Value::Fixed, rest))
        }
        2 => {
            let (len, rest) = read_uvarint(rest).ok_or(ProtobufError::Truncated)?;
            let len = usize::try_from(len).map_err(|_| ProtobufError::Truncated)?;
            if len > rest.len() {
                return Err(ProtobufError::Truncated);
            }
            let (bytes, rest) = rest.split_at(len);
            Ok((field, Value::Bytes(bytes), rest))
        }
        5 => {
            let rest = rest.get(4..).ok_or(ProtobufError::Truncated)?;
            Ok((field, Value::Fixed, rest))
        }
        other => Err(ProtobufError::WireType(other)),
    }
}

/// Appends field `field` as a length-delimited value.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    write_uvarint(out, (field << 3) | 2);
    write_uvarint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_each_wire_type_and_refuses_groups() {
        // field 1 varint 150, field 2 fixed64, field 3 bytes "hi", field 4 fixed32
        let mut msg = vec![0x08, 0x96, 0x01, 0x11, 0, 0, 0, 0, 0, 0, 0, 0];
        put_bytes(&mut msg, 3, b"hi");
        msg.extend_from_slice(&[0x25, 1, 2, 3, 4]);
        let (f, v, rest) = next_field(&msg).expect("varint");
        assert_eq!((f, v), (1, Value::Varint(150)));
        let (f, v, rest) = next_field(rest).expect("fixed64");
        assert_eq!((f, v), (2, Value::Fixed));
        let (f, v, rest) = next_field(rest).expect("bytes");
        assert_eq!((f, v), (3, Value::Bytes(&b"hi"[..])));
        let (f, v, rest) = next_field(rest).expect("fixed32");
        assert_eq!((f, v, rest.len()), (4, Value::Fixed, 0));
        assert_eq!(next_field(&[0x0b]), Err(ProtobufError::WireType(3)));
    }

    #[test]
    fn a_length_past_the_end_is_truncated() {
        assert_eq!(
            next_field(&[0x0a, 0x05, 1, 2]),
            Err(ProtobufError::Truncated)
        );
        assert_eq!(next_field(&[0x09, 1, 2]), Err(ProtobufError::Truncated));
        assert_eq!(next_field(&[0x80]), Err(ProtobufError::Truncated));
    }

    proptest! {
        #[test]
        fn bytes_fields_round_trip(field in 1u64..1 << 28, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut out = Vec::new();
            put_bytes(&mut out, field, &bytes);
            let (f, v, rest) = next_field(&out).expect("read back");
            prop_assert_eq!(f, field);
            prop_assert_eq!(v, Value::Bytes(&bytes));
            prop_assert!(rest.is_empty());
        }

        #[test]
        fn reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = &bytes[..];
            for _ in 0..64 {
                match next_field(buf) {
                    Ok((_, _, rest)) if rest.len() < buf.len() => buf = rest,
                    _ => break,
                }
            }
        }
    }
}

//! Protobuf wire-format reading: varints, keys, length-delimited slices and skipping.
//!
//! Every read is bounds-checked and returns an error instead of panicking, because the bytes
//! come straight from an HTTP request body.

/// How a value is framed on the wire (the low 3 bits of a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    StartGroup,
    EndGroup,
    Fixed32,
}

impl WireType {
    fn from_bits(bits: u64) -> Option<WireType> {
        Some(match bits {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            3 => WireType::StartGroup,
            4 => WireType::EndGroup,
            5 => WireType::Fixed32,
            _ => return None,
        })
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "fixed64",
            WireType::LengthDelimited => "length-delimited",
            WireType::StartGroup => "start-group",
            WireType::EndGroup => "end-group",
            WireType::Fixed32 => "fixed32",
        }
    }
}

/// A wire-level failure; the decoder adds which message and field it was reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WireError {
    TruncatedVarint,
    VarintTooLong,
    Truncated { needed: u64, available: usize },
    BadWireType(u64),
    FieldNumberZero,
    FieldNumberTooLarge(u64),
    UnbalancedGroup,
    GroupsTooDeep,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::TruncatedVarint => write!(f, "truncated varint"),
            WireError::VarintTooLong => write!(f, "varint longer than 10 bytes"),
            WireError::Truncated { needed, available } => {
                write!(
                    f,
                    "length {needed} runs past the end of the buffer ({available} bytes left)"
                )
            }
            WireError::BadWireType(t) => write!(f, "invalid wire type {t}"),
            WireError::FieldNumberZero => write!(f, "illegal field number 0"),
            WireError::FieldNumberTooLarge(n) => write!(f, "field number {n} out of range"),
            WireError::UnbalancedGroup => write!(f, "unbalanced start/end group"),
            WireError::GroupsTooDeep => write!(f, "groups nested too deeply"),
        }
    }
}

/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;
/// Nested groups deeper than this are rejected rather than recursed into.
const MAX_GROUP_DEPTH: usize = 100;

/// A cursor over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::TruncatedVarint);
            };
            self.pos += 1;
            // Bits beyond 64 in the 10th byte are dropped, as Go's generated decoders do.
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong)
    }

    /// Reads a key: (field number, wire type).
    pub(crate) fn key(&mut self) -> Result<(u32, WireType), WireError> {
        let key = self.varint()?;
        let wire_type = WireType::from_bits(key & 7).ok_or(WireError::BadWireType(key & 7))?;
        let number = key >> 3;
        if number == 0 {
            return Err(WireError::FieldNumberZero);
        }
        if number > MAX_FIELD_NUMBER {
            return Err(WireError::FieldNumberTooLarge(number));
        }
        Ok((number as u32, wire_type))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let available = self.buf.len() - self.pos;
        if len > available as u64 {
            return Err(WireError::Truncated {
                needed: len,
                available,
            });
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    pub(crate) fn length_delimited(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        self.take(len)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take(8)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_le_bytes(array))
    }

    /// Skips the value of a field whose key was just read (unknown or ignored fields).
    pub(crate) fn skip(&mut self, number: u32, wire_type: WireType) -> Result<(), WireError> {
        self.skip_at_depth(number, wire_type, 0)
    }

    fn skip_at_depth(
        &mut self,
        number: u32,
        wire_type: WireType,
        depth: usize,
    ) -> Result<(), WireError> {
        match wire_type {
            WireType::Varint => self.varint().map(drop),
            WireType::Fixed64 => self.take(8).map(drop),
            WireType::Fixed32 => self.take(4).map(drop),
            WireType::LengthDelimited => self.length_delimited().map(drop),
            WireType::EndGroup => Err(WireError::UnbalancedGroup),
            WireType::StartGroup => {
                if depth >= MAX_GROUP_DEPTH {
                    return Err(WireError::GroupsTooDeep);
                }
                loop {
                    if self.is_empty() {
                        return Err(WireError::UnbalancedGroup);
                    }
                    let (inner, inner_type) = self.key()?;
                    if inner_type == WireType::EndGroup {
                        return if inner == number {
                            Ok(())
                        } else {
                            Err(WireError::UnbalancedGroup)
                        };
                    }
                    self.skip_at_depth(inner, inner_type, depth + 1)?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_truncation_is_an_error() {
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        assert_eq!(
            Reader::new(&[0x96]).varint(),
            Err(WireError::TruncatedVarint)
        );
        assert_eq!(
            Reader::new(&[0xff; 11]).varint(),
            Err(WireError::VarintTooLong)
        );
        // -1 as int32 is sign-extended to ten bytes.
        let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&minus_one).varint().map(|v| v as i32), Ok(-1));
    }

    #[test]
    fn keys_reject_bad_wire_types_and_field_zero() {
        assert_eq!(Reader::new(&[0x08]).key(), Ok((1, WireType::Varint)));
        assert_eq!(Reader::new(&[0x0e]).key(), Err(WireError::BadWireType(6)));
        assert_eq!(Reader::new(&[0x02]).key(), Err(WireError::FieldNumberZero));
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        assert_eq!(
            Reader::new(&[0x05, b'a']).length_delimited(),
            Err(WireError::Truncated {
                needed: 5,
                available: 1
            })
        );
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert!(Reader::new(&huge).length_delimited().is_err());
    }

    #[test]
    fn groups_are_skipped_when_balanced() {
        // field 1 start group, field 2 varint 7, field 1 end group, then field 3 varint 1.
        let mut r = Reader::new(&[0x0b, 0x10, 0x07, 0x0c, 0x18, 0x01]);
        let (n, t) = r.key().unwrap();
        r.skip(n, t).unwrap();
        assert_eq!(r.key(), Ok((3, WireType::Varint)));
        let mut unbalanced = Reader::new(&[0x0b, 0x10, 0x07, 0x14]);
        let (n, t) = unbalanced.key().unwrap();
        assert_eq!(unbalanced.skip(n, t), Err(WireError::UnbalancedGroup));
    }
}

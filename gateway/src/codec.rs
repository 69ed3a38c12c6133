//! FIX tag=value codec: framing, a zero-allocation parser that borrows field values from the input
//! buffer, and an encoder that writes into a caller-provided buffer.
//!
//! Decoding is two steps. [`frame`] finds one message at the start of a byte stream using
//! BeginString (8), BodyLength (9) and CheckSum (10), and checks length and checksum; it never
//! reads past the frame it reports. [`Message::parse`] then splits the frame into fields (tag
//! number and value span, kept in a fixed array of [`FIELDS_MAX`] entries inside the message: no
//! heap). Field accessors return typed [`FieldError`]s that map one to one onto FIX
//! SessionRejectReason (373) codes.
//!
//! Encoding: [`Writer`] writes `8=..|9=|35=..|` and the fields, then [`Writer::finish`] fills in
//! BodyLength (moving the body left over the reserved digits) and appends CheckSum.
//!
//! Numbers are never floating point: prices and quantities are integer counts of `10^exponent`
//! units, converted exactly with [`matcher::decimal`] (see [`parse_decimal`] and
//! [`Writer::decimal`]).

use crate::tags;
use matcher::decimal::DecimalError;

/// The FIX field delimiter.
pub const SOH: u8 = 0x01;
/// Largest frame (BeginString through CheckSum) accepted or produced, in bytes.
pub const MESSAGE_LENGTH_MAX: usize = 8192;
/// Largest number of fields in one message (BeginString, BodyLength and CheckSum included).
pub const FIELDS_MAX: usize = 128;
/// Largest tag number accepted (FIX user-defined tags go up to 9999, 4.4 reserves up to 39999).
pub const TAG_MAX: u32 = 99_999;
/// Longest BeginString value accepted ("FIX.4.4" is 7 bytes).
pub const BEGIN_STRING_LENGTH_MAX: usize = 16;
/// Digits reserved for BodyLength while encoding (the body is moved left when it needs fewer).
const BODY_LENGTH_DIGITS_RESERVED: usize = 5;
/// Length of the trailer `10=nnn<SOH>`.
const TRAILER_LENGTH: usize = 7;
/// Longest decimal integer field we convert (u64 has 20 digits; leading zeros are allowed in FIX).
const INTEGER_DIGITS_MAX: usize = 20;

const _: () = assert!(MESSAGE_LENGTH_MAX < 10usize.pow(BODY_LENGTH_DIGITS_RESERVED as u32));
const _: () = assert!(MESSAGE_LENGTH_MAX <= u16::MAX as usize);
const _: () = assert!(FIELDS_MAX <= u16::MAX as usize);

/// Result of [`frame`] on the start of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framed {
    /// The bytes are a valid prefix of a message; read more.
    Incomplete,
    /// A whole, checksummed message of `length` bytes starts the buffer.
    Complete {
        /// Frame length in bytes (BeginString through the CheckSum's SOH).
        length: usize,
    },
}

/// Why the start of a stream is not a FIX message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The stream does not start with `8=` and a BeginString ending in SOH.
    #[error("garbled: stream does not start with a BeginString (8) field")]
    Garbled,
    /// The second field is not BodyLength (9).
    #[error("garbled: BodyLength (9) is not the second field")]
    MissingBodyLength,
    /// BodyLength is not a decimal number, or the trailer is not where BodyLength says.
    #[error("bad BodyLength (9): not a number, or CheckSum (10) is not where it points")]
    BadBodyLength,
    /// The frame would exceed [`MESSAGE_LENGTH_MAX`].
    #[error("message of {length} bytes exceeds the maximum of {MESSAGE_LENGTH_MAX}")]
    Oversized {
        /// Declared (or lower bound of the) frame length.
        length: u64,
    },
    /// CheckSum (10) does not match the bytes.
    #[error("bad CheckSum (10): computed {computed:03}, received {received:03}")]
    BadChecksum {
        /// Sum of the bytes before the trailer, mod 256.
        computed: u8,
        /// Value of the CheckSum field (three digits: up to 999).
        received: u16,
    },
}

impl FrameError {
    /// Whether the frame's extent is known despite the error, so a reader can skip exactly this
    /// message and stay in sync (FIX: a message with a bad checksum is ignored, not answered).
    pub fn frame_length_known(&self) -> bool {
        matches!(self, FrameError::BadChecksum { .. })
    }
}

/// Checks whether `bytes` starts with a complete, well-framed FIX message.
///
/// Never reads beyond `MESSAGE_LENGTH_MAX` bytes. `Ok(Incomplete)` only when the bytes seen so
/// far are a valid prefix. On `Err(BadChecksum)` the frame length is that of a good frame:
/// [`frame_length_unchecked`] gives it, so the reader can skip it.
pub fn frame(bytes: &[u8]) -> Result<Framed, FrameError> {
    match frame_extent(bytes)? {
        None => Ok(Framed::Incomplete),
        Some(length) => {
            let trailer = length - TRAILER_LENGTH;
            let computed = checksum(&bytes[..trailer]);
            let received = three_digits(&bytes[trailer + 3..trailer + 6]);
            if u16::from(computed) != received {
                return Err(FrameError::BadChecksum { computed, received });
            }
            Ok(Framed::Complete { length })
        }
    }
}

/// The frame length of a message whose framing is right but whose checksum may be wrong.
pub fn frame_length_unchecked(bytes: &[u8]) -> Option<usize> {
    frame_extent(bytes).ok().flatten()
}

/// Framing without the checksum: the total length once the whole frame is present.
fn frame_extent(bytes: &[u8]) -> Result<Option<usize>, FrameError> {
    let expect = |at: usize, wanted: &[u8], error: FrameError| -> Result<bool, FrameError> {
        for (offset, &byte) in wanted.iter().enumerate() {
            match bytes.get(at + offset) {
                None => return Ok(false),
                Some(&got) if got != byte => return Err(error),
                Some(_) => {}
            }
        }
        Ok(true)
    };
    if !expect(0, b"8=", FrameError::Garbled)? {
        return Ok(None);
    }
    // BeginString value: 1..=BEGIN_STRING_LENGTH_MAX bytes, then SOH.
    let mut at = 2;
    loop {
        match bytes.get(at) {
            None => return Ok(None),
            Some(&SOH) if at > 2 => break,
            Some(&SOH) | Some(&b'=') => return Err(FrameError::Garbled),
            Some(_) if at - 2 >= BEGIN_STRING_LENGTH_MAX => return Err(FrameError::Garbled),
            Some(_) => at += 1,
        }
    }
    at += 1;
    if !expect(at, b"9=", FrameError::MissingBodyLength)? {
        return Ok(None);
    }
    at += 2;
    let digits_start = at;
    let mut body_length: u64 = 0;
    loop {
        match bytes.get(at) {
            None => return Ok(None),
            Some(&SOH) if at > digits_start => break,
            Some(&byte) if byte.is_ascii_digit() && at - digits_start < INTEGER_DIGITS_MAX => {
                body_length = body_length * 10 + u64::from(byte - b'0');
                if body_length > MESSAGE_LENGTH_MAX as u64 {
                    return Err(FrameError::Oversized {
                        length: body_length,
                    });
                }
                at += 1;
            }
            Some(_) => return Err(FrameError::BadBodyLength),
        }
    }
    let body_start = at + 1;
    // body_length <= MESSAGE_LENGTH_MAX, so this cannot overflow.
    let length = body_start + body_length as usize + TRAILER_LENGTH;
    if length > MESSAGE_LENGTH_MAX {
        return Err(FrameError::Oversized {
            length: length as u64,
        });
    }
    if bytes.len() < length {
        return Ok(None);
    }
    let trailer = length - TRAILER_LENGTH;
    let trailer_ok = bytes[trailer - 1] == SOH
        && &bytes[trailer..trailer + 3] == b"10="
        && bytes[trailer + 3..trailer + 6]
            .iter()
            .all(u8::is_ascii_digit)
        && bytes[length - 1] == SOH;
    if !trailer_ok {
        return Err(FrameError::BadBodyLength);
    }
    Ok(Some(length))
}

/// Sum of the bytes mod 256: the FIX CheckSum.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte))
}

fn three_digits(digits: &[u8]) -> u16 {
    debug_assert!(digits.len() == 3 && digits.iter().all(u8::is_ascii_digit));
    digits
        .iter()
        .fold(0u16, |value, &digit| value * 10 + u16::from(digit - b'0'))
}

/// Why a framed message does not split into fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A tag is not a number in `1..=TAG_MAX` without a leading zero, or has no `=`.
    #[error("invalid tag number at byte {offset}")]
    InvalidTag {
        /// Byte offset of the field in the frame.
        offset: u16,
    },
    /// A field has an empty value.
    #[error("tag {tag} specified without a value")]
    EmptyValue {
        /// The tag.
        tag: u32,
    },
    /// More than [`FIELDS_MAX`] fields.
    #[error("more than {FIELDS_MAX} fields")]
    TooManyFields,
    /// The message does not start `8=..|9=..|35=..|` or does not end with CheckSum.
    #[error("header fields out of order: BeginString, BodyLength, MsgType must come first")]
    HeaderOrder,
}

impl ParseError {
    /// The SessionRejectReason (373) for this error, and the RefTagID (371) if known.
    pub fn session_reject_reason(&self) -> (u32, Option<u32>) {
        match *self {
            ParseError::InvalidTag { .. } => (tags::session_reject::INVALID_TAG_NUMBER, None),
            ParseError::EmptyValue { tag } => (tags::session_reject::TAG_WITHOUT_VALUE, Some(tag)),
            ParseError::TooManyFields => (tags::session_reject::INCORRECT_DATA_FORMAT, None),
            ParseError::HeaderOrder => (
                tags::session_reject::REQUIRED_TAG_MISSING,
                Some(tags::MSG_TYPE),
            ),
        }
    }
}

/// A problem with one field of a parsed message; maps onto SessionRejectReason (373).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Required tag missing (373=1).
    #[error("required tag {tag} missing")]
    Missing {
        /// The tag.
        tag: u32,
    },
    /// Incorrect data format for value (373=6).
    #[error("incorrect data format for tag {tag}")]
    Format {
        /// The tag.
        tag: u32,
    },
    /// Value is incorrect (out of range) for this tag (373=5).
    #[error("value out of range for tag {tag}")]
    Value {
        /// The tag.
        tag: u32,
    },
    /// Tag appears more than once (373=13).
    #[error("tag {tag} appears more than once")]
    Duplicate {
        /// The tag.
        tag: u32,
    },
}

impl FieldError {
    /// The offending tag (RefTagID, 371).
    pub fn tag(&self) -> u32 {
        match *self {
            FieldError::Missing { tag }
            | FieldError::Format { tag }
            | FieldError::Value { tag }
            | FieldError::Duplicate { tag } => tag,
        }
    }

    /// SessionRejectReason (373).
    pub fn session_reject_reason(&self) -> u32 {
        match self {
            FieldError::Missing { .. } => tags::session_reject::REQUIRED_TAG_MISSING,
            FieldError::Format { .. } => tags::session_reject::INCORRECT_DATA_FORMAT,
            FieldError::Value { .. } => tags::session_reject::VALUE_OUT_OF_RANGE,
            FieldError::Duplicate { .. } => tags::session_reject::TAG_APPEARS_MORE_THAN_ONCE,
        }
    }
}

/// Tags below this are indexed while a message is parsed (first value and a "repeated" bit), so
/// reading them costs one table access: the header, session and order fields the gateway reads
/// all are. Other tags are found by walking the frame again (a filter on them answers "absent"
/// at once in nearly every case).
pub const INDEXED_TAGS: usize = 128;

/// Where a value lies in the frame; `start == 0` means "absent" (no value starts at byte 0).
#[derive(Clone, Copy, Debug, Default)]
struct ValueSpan {
    start: u16,
    end: u16,
}

/// A parsed message: where the values of the indexed tags lie in the borrowed frame, which tags
/// repeat, and a filter of the other tags present. Holds no heap memory, and is built in one
/// pass over the frame.
#[derive(Clone)]
pub struct Message<'a> {
    bytes: &'a [u8],
    /// First value of each tag below [`INDEXED_TAGS`].
    first: [ValueSpan; INDEXED_TAGS],
    /// Bit `tag` set: a tag below [`INDEXED_TAGS`] occurs more than once.
    repeated: u128,
    /// Bit `tag % 64` set for every tag at or above [`INDEXED_TAGS`] present (a Bloom filter
    /// with one hash: a clear bit proves the tag absent, a set bit means "walk the frame").
    others: u64,
    count: u16,
}

const _: () = assert!(INDEXED_TAGS <= 128 && INDEXED_TAGS > tags::MSG_TYPE as usize);

impl core::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut list = f.debug_list();
        for (tag, value) in self.fields() {
            list.entry(&format_args!("{tag}={}", String::from_utf8_lossy(value)));
        }
        list.finish()
    }
}

/// Index of the first SOH at or after `at`, or `bytes.len()` if there is none. Eight bytes at a
/// time (the "has zero byte" bit trick on the bytes XOR SOH), then byte by byte.
#[inline]
fn find_soh(bytes: &[u8], mut at: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = bytes.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        let word = u64::from_le_bytes(*chunk) ^ (ONES * u64::from(SOH));
        // The lowest set bit marks the first zero byte of `word` exactly (a borrow only
        // propagates upwards from a zero byte, so false positives can only lie above it).
        let zero_bytes = word.wrapping_sub(ONES) & !word & HIGHS;
        if zero_bytes != 0 {
            return at + (zero_bytes.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    while at < bytes.len() && bytes[at] != SOH {
        at += 1;
    }
    at
}

/// The field starting at `*at` of a frame [`Message::parse`] accepted, and moves `*at` past it.
/// `None` at the end (or, defensively, on anything a parsed frame cannot hold).
fn next_field<'a>(bytes: &'a [u8], at: &mut usize) -> Option<(u32, &'a [u8])> {
    let mut tag: u32 = 0;
    loop {
        match bytes.get(*at) {
            Some(&b'=') => break,
            Some(&digit) if digit.is_ascii_digit() && tag <= TAG_MAX => {
                tag = tag * 10 + u32::from(digit - b'0');
                *at += 1;
            }
            _ => return None,
        }
    }
    let start = *at + 1;
    let end = find_soh(bytes, start);
    *at = end + 1;
    Some((tag, bytes.get(start..end)?))
}

impl<'a> Message<'a> {
    /// Splits a frame (as reported by [`frame`]) into fields. The first three fields must be
    /// BeginString, BodyLength and MsgType, the last CheckSum.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, ParseError> {
        const HEADER: [u32; 3] = [tags::BEGIN_STRING, tags::BODY_LENGTH, tags::MSG_TYPE];
        if bytes.len() > MESSAGE_LENGTH_MAX {
            return Err(ParseError::TooManyFields);
        }
        let mut message = Message {
            bytes,
            first: [ValueSpan::default(); INDEXED_TAGS],
            repeated: 0,
            others: 0,
            count: 0,
        };
        let mut header_ok = true;
        let mut last_tag = 0;
        let mut at = 0usize;
        while at < bytes.len() {
            let field_start = at;
            let mut tag: u32 = 0;
            while at < bytes.len() && bytes[at].is_ascii_digit() {
                // A leading zero or too many digits is an invalid tag.
                if (at == field_start && bytes[at] == b'0') || tag > TAG_MAX {
                    return Err(ParseError::InvalidTag {
                        offset: field_start as u16,
                    });
                }
                tag = tag * 10 + u32::from(bytes[at] - b'0');
                at += 1;
            }
            if at == field_start || tag > TAG_MAX || bytes.get(at) != Some(&b'=') {
                return Err(ParseError::InvalidTag {
                    offset: field_start as u16,
                });
            }
            at += 1;
            let value_start = at;
            at = find_soh(bytes, at);
            if at == bytes.len() {
                // No terminating SOH: `frame` guarantees one, so this is not a frame.
                return Err(ParseError::HeaderOrder);
            }
            if at == value_start {
                return Err(ParseError::EmptyValue { tag });
            }
            let index = usize::from(message.count);
            if index == FIELDS_MAX {
                return Err(ParseError::TooManyFields);
            }
            if let Some(&wanted) = HEADER.get(index) {
                header_ok &= tag == wanted;
            }
            match message.first.get_mut(tag as usize) {
                Some(first) if first.start == 0 => {
                    // value_start >= 2 and both offsets <= MESSAGE_LENGTH_MAX <= u16::MAX.
                    *first = ValueSpan {
                        start: value_start as u16,
                        end: at as u16,
                    };
                }
                Some(_) => message.repeated |= 1 << tag,
                None => message.others |= 1 << (tag % 64),
            }
            message.count += 1;
            last_tag = tag;
            at += 1;
        }
        if !(header_ok && message.count >= 4 && last_tag == tags::CHECK_SUM) {
            return Err(ParseError::HeaderOrder);
        }
        Ok(message)
    }

    /// The frame's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    #[inline]
    fn value(&self, span: ValueSpan) -> &'a [u8] {
        &self.bytes[usize::from(span.start)..usize::from(span.end)]
    }

    /// Fields in order (BeginString, BodyLength and CheckSum included).
    pub fn fields(&self) -> impl Iterator<Item = (u32, &'a [u8])> + '_ {
        let bytes = self.bytes;
        let mut at = 0;
        core::iter::from_fn(move || next_field(bytes, &mut at))
    }

    /// Number of fields.
    pub fn field_count(&self) -> usize {
        usize::from(self.count)
    }

    /// BeginString (8).
    pub fn begin_string(&self) -> &'a [u8] {
        self.value(self.first[tags::BEGIN_STRING as usize])
    }

    /// MsgType (35).
    pub fn msg_type(&self) -> &'a [u8] {
        self.value(self.first[tags::MSG_TYPE as usize])
    }

    /// Whether a tag at or above [`INDEXED_TAGS`] may be present (`false`: it is not).
    #[inline]
    fn maybe_other(&self, tag: u32) -> bool {
        self.others & (1 << (tag % 64)) != 0
    }

    /// First value of `tag`, if present.
    #[inline]
    pub fn get(&self, tag: u32) -> Option<&'a [u8]> {
        match self.first.get(tag as usize) {
            Some(&span) if span.start == 0 => None,
            Some(&span) => Some(self.value(span)),
            None if !self.maybe_other(tag) => None,
            None => self
                .fields()
                .find(|&(field, _)| field == tag)
                .map(|(_, value)| value),
        }
    }

    /// The value of `tag` if present exactly once; [`FieldError::Duplicate`] if repeated.
    #[inline]
    pub fn optional(&self, tag: u32) -> Result<Option<&'a [u8]>, FieldError> {
        match self.first.get(tag as usize) {
            Some(_) if self.repeated & (1 << tag) != 0 => Err(FieldError::Duplicate { tag }),
            Some(&span) if span.start == 0 => Ok(None),
            Some(&span) => Ok(Some(self.value(span))),
            None if !self.maybe_other(tag) => Ok(None),
            None => {
                let mut found = None;
                for (field, value) in self.fields() {
                    if field == tag {
                        if found.is_some() {
                            return Err(FieldError::Duplicate { tag });
                        }
                        found = Some(value);
                    }
                }
                Ok(found)
            }
        }
    }

    /// The value of `tag`; [`FieldError::Missing`] if absent.
    #[inline]
    pub fn required(&self, tag: u32) -> Result<&'a [u8], FieldError> {
        self.optional(tag)?.ok_or(FieldError::Missing { tag })
    }

    /// A non-negative integer field, if present.
    #[inline]
    pub fn optional_u64(&self, tag: u32) -> Result<Option<u64>, FieldError> {
        match self.optional(tag)? {
            None => Ok(None),
            Some(value) => parse_u64(value).map(Some).ok_or(FieldError::Format { tag }),
        }
    }

    /// A required non-negative integer field.
    #[inline]
    pub fn required_u64(&self, tag: u32) -> Result<u64, FieldError> {
        self.optional_u64(tag)?.ok_or(FieldError::Missing { tag })
    }

    /// A single-character field, if present.
    #[inline]
    pub fn optional_char(&self, tag: u32) -> Result<Option<u8>, FieldError> {
        match self.optional(tag)? {
            None => Ok(None),
            Some([byte]) => Ok(Some(*byte)),
            Some(_) => Err(FieldError::Format { tag }),
        }
    }

    /// A required single-character field.
    #[inline]
    pub fn required_char(&self, tag: u32) -> Result<u8, FieldError> {
        self.optional_char(tag)?.ok_or(FieldError::Missing { tag })
    }

    /// A Boolean (`Y`/`N`) field, if present.
    #[inline]
    pub fn optional_bool(&self, tag: u32) -> Result<Option<bool>, FieldError> {
        match self.optional_char(tag)? {
            None => Ok(None),
            Some(b'Y') => Ok(Some(true)),
            Some(b'N') => Ok(Some(false)),
            Some(_) => Err(FieldError::Format { tag }),
        }
    }
}

/// Parses a FIX `int`/`SeqNum` (digits only, leading zeros allowed) that fits a `u64`.
pub fn parse_u64(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > INTEGER_DIGITS_MAX {
        return None;
    }
    let mut result: u64 = 0;
    for &byte in value {
        if !byte.is_ascii_digit() {
            return None;
        }
        result = result
            .checked_mul(10)?
            .checked_add(u64::from(byte - b'0'))?;
    }
    Some(result)
}

/// `10^n` for `n` in `0..=19` (every power of ten a `u64` holds).
const POW10: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut n = 1;
    while n < 20 {
        table[n] = table[n - 1] * 10;
        n += 1;
    }
    table
};

/// Parses a FIX decimal (`Price`, `Qty`: optional sign, digits, optional point) as an exact
/// number of `10^exponent` units. Digits below the unit are [`DecimalError::Precision`], never a
/// rounding.
///
/// The same answers as [`matcher::decimal::parse_units`] (at most
/// [`matcher::decimal::DECIMAL_TEXT_LENGTH_MAX`] bytes, `[-+]digits[.digits]` with at least one
/// digit, errors ranked Syntax, then Precision, then Range), read straight from the bytes in
/// `u64`: the digits are kept as `significand × 10^zeros` (`zeros` the trailing zeros), so
/// whether a digit lies below the unit is known exactly however many digits there are, and any
/// significand beyond `u64` is out of range.
pub fn parse_decimal(value: &[u8], exponent: i8) -> Result<i64, DecimalError> {
    if value.is_empty() || value.len() > matcher::decimal::DECIMAL_TEXT_LENGTH_MAX {
        return Err(DecimalError::Syntax);
    }
    let (negative, digits) = match value[0] {
        b'-' => (true, &value[1..]),
        b'+' => (false, &value[1..]),
        _ => (false, value),
    };
    let mut significand: u64 = 0;
    let mut zeros: u32 = 0;
    let mut overflow = false;
    let mut fraction_digits: i32 = 0;
    let mut seen_point = false;
    let mut seen_digit = false;
    for &byte in digits {
        match byte {
            b'0' => {
                seen_digit = true;
                zeros += 1;
                fraction_digits += i32::from(seen_point);
            }
            b'1'..=b'9' => {
                seen_digit = true;
                fraction_digits += i32::from(seen_point);
                let digit = u64::from(byte - b'0');
                if significand == 0 {
                    // Leading zeros carry no value.
                    significand = digit;
                } else {
                    match POW10
                        .get(zeros as usize + 1)
                        .and_then(|&scale| significand.checked_mul(scale))
                        .and_then(|scaled| scaled.checked_add(digit))
                    {
                        Some(next) => significand = next,
                        None => overflow = true,
                    }
                }
                zeros = 0;
            }
            b'.' if !seen_point => seen_point = true,
            _ => return Err(DecimalError::Syntax),
        }
    }
    if !seen_digit {
        return Err(DecimalError::Syntax);
    }
    if significand == 0 {
        return Ok(0);
    }
    // value = significand × 10^(zeros - fraction_digits) = units × 10^exponent. The
    // significand's last digit is not zero, so units are whole exactly when `scale >= 0`.
    let scale = zeros as i32 - fraction_digits - i32::from(exponent);
    if scale < 0 {
        return Err(DecimalError::Precision);
    }
    if overflow {
        return Err(DecimalError::Range);
    }
    let magnitude = POW10
        .get(scale as usize)
        .and_then(|&power| significand.checked_mul(power))
        .ok_or(DecimalError::Range)?;
    if negative {
        // Down to -2^63 = i64::MIN.
        if magnitude > i64::MIN.unsigned_abs() {
            return Err(DecimalError::Range);
        }
        Ok(0i64.wrapping_sub_unsigned(magnitude))
    } else {
        i64::try_from(magnitude).map_err(|_| DecimalError::Range)
    }
}

/// Why [`Writer::finish`] could not produce a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The caller's buffer is too small for the message.
    #[error("encode buffer too small")]
    BufferTooSmall,
    /// The message would exceed [`MESSAGE_LENGTH_MAX`].
    #[error("encoded message exceeds {MESSAGE_LENGTH_MAX} bytes")]
    Oversized,
}

/// Writes one FIX message into a caller-provided buffer. Field writes never fail individually:
/// running out of space is remembered and reported by [`Writer::finish`].
pub struct Writer<'b> {
    buffer: &'b mut [u8],
    position: usize,
    body_length_at: usize,
    body_start: usize,
    overflow: bool,
}

impl<'b> Writer<'b> {
    /// Starts a message: BeginString, a reserved BodyLength and MsgType.
    pub fn new(buffer: &'b mut [u8], begin_string: &[u8], msg_type: &[u8]) -> Writer<'b> {
        let mut writer = Writer {
            buffer,
            position: 0,
            body_length_at: 0,
            body_start: 0,
            overflow: false,
        };
        writer.bytes(tags::BEGIN_STRING, begin_string);
        writer.put(b"9=");
        writer.body_length_at = writer.position;
        writer.put(&[b'0'; BODY_LENGTH_DIGITS_RESERVED]);
        writer.put(&[SOH]);
        writer.body_start = writer.position;
        writer.bytes(tags::MSG_TYPE, msg_type);
        writer
    }

    fn put(&mut self, bytes: &[u8]) {
        let end = self.position + bytes.len();
        match self.buffer.get_mut(self.position..end) {
            Some(target) => {
                target.copy_from_slice(bytes);
                self.position = end;
            }
            None => self.overflow = true,
        }
    }

    /// The next `length` bytes of the buffer, and the position moved past them; `None` (and
    /// the overflow remembered) if they do not fit.
    #[inline]
    fn reserve(&mut self, length: usize) -> Option<&mut [u8]> {
        let start = self.position;
        match self.buffer.get_mut(start..start + length) {
            Some(target) => {
                self.position = start + length;
                Some(target)
            }
            None => {
                self.overflow = true;
                None
            }
        }
    }

    #[inline]
    fn tag(&mut self, tag: u32) {
        let value = u64::from(tag);
        let digits = decimal_digits(value);
        if let Some(target) = self.reserve(digits + 1) {
            write_digits(value, &mut target[..digits]);
            target[digits] = b'=';
        }
    }

    #[inline]
    fn unsigned(&mut self, value: u64) {
        if let Some(target) = self.reserve(decimal_digits(value)) {
            write_digits(value, target);
        }
    }

    /// `value` left-padded with zeros to `width` digits (`width` at least its digit count).
    #[inline]
    fn zero_padded(&mut self, value: u64, width: usize) {
        let digits = decimal_digits(value);
        debug_assert!(digits <= width);
        if let Some(target) = self.reserve(width) {
            let (zeros, rest) = target.split_at_mut(width - digits);
            zeros.fill(b'0');
            write_digits(value, rest);
        }
    }

    /// A field with a raw value (must not contain SOH; values taken from parsed messages never
    /// do).
    pub fn bytes(&mut self, tag: u32, value: &[u8]) {
        debug_assert!(!value.is_empty() && !value.contains(&SOH));
        self.tag(tag);
        self.put(value);
        self.put(&[SOH]);
    }

    /// A single-character field.
    pub fn char(&mut self, tag: u32, value: u8) {
        self.bytes(tag, &[value]);
    }

    /// A non-negative integer field.
    pub fn u64(&mut self, tag: u32, value: u64) {
        self.tag(tag);
        self.unsigned(value);
        self.put(&[SOH]);
    }

    /// A Boolean field (`Y`/`N`).
    pub fn bool(&mut self, tag: u32, value: bool) {
        self.char(tag, if value { b'Y' } else { b'N' });
    }

    /// An exact decimal field: `value × 10^exponent`, trailing fractional zeros dropped
    /// (`decimal(44, 10120, -2)` writes `44=101.2`).
    pub fn decimal(&mut self, tag: u32, value: i128, exponent: i8) {
        self.tag(tag);
        match u64::try_from(value.unsigned_abs()) {
            // Fast path (every price and quantity in practice): u64 digits, one division.
            Ok(magnitude) if exponent.unsigned_abs() < POW10.len() as u8 => {
                if value < 0 {
                    self.put(b"-");
                }
                if exponent >= 0 {
                    self.unsigned(magnitude);
                    if magnitude != 0 {
                        self.put(&[b'0'; 19][..exponent as usize]);
                    }
                } else {
                    let width = usize::from(exponent.unsigned_abs());
                    let scale = POW10[width];
                    self.unsigned(magnitude / scale);
                    let mut fraction = magnitude % scale;
                    if fraction != 0 {
                        // Trailing fractional zeros dropped.
                        let mut width = width;
                        while fraction.is_multiple_of(10) {
                            fraction /= 10;
                            width -= 1;
                        }
                        self.put(b".");
                        self.zero_padded(fraction, width);
                    }
                }
            }
            _ => {
                let mut text = [0u8; DECIMAL_TEXT_MAX];
                let length = format_decimal(value, exponent, &mut text);
                self.put(&text[..length]);
            }
        }
        self.put(&[SOH]);
    }

    /// A UTCTimestamp field with milliseconds (`YYYYMMDD-HH:MM:SS.sss`) from nanoseconds since
    /// the Unix epoch.
    pub fn timestamp(&mut self, tag: u32, unix_ns: u64) {
        self.tag(tag);
        let text = format_timestamp(unix_ns);
        self.put(&text);
        self.put(&[SOH]);
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.position
    }

    /// Whether nothing has been written (never true after [`Writer::new`]).
    pub fn is_empty(&self) -> bool {
        self.position == 0
    }

    /// Fills in BodyLength, appends CheckSum and returns the message length.
    pub fn finish(mut self) -> Result<usize, EncodeError> {
        if self.overflow {
            return Err(EncodeError::BufferTooSmall);
        }
        let body_length = self.position - self.body_start;
        let digit_count = decimal_digits(body_length as u64);
        if digit_count > BODY_LENGTH_DIGITS_RESERVED {
            return Err(EncodeError::Oversized);
        }
        let at = self.body_length_at;
        write_digits(body_length as u64, &mut self.buffer[at..at + digit_count]);
        self.buffer[at + digit_count] = SOH;
        let new_body_start = at + digit_count + 1;
        self.buffer
            .copy_within(self.body_start..self.position, new_body_start);
        self.position = new_body_start + body_length;
        let sum = checksum(&self.buffer[..self.position]);
        self.put(b"10=");
        self.put(&[
            b'0' + sum / 100,
            b'0' + (sum / 10) % 10,
            b'0' + sum % 10,
            SOH,
        ]);
        if self.overflow {
            return Err(EncodeError::BufferTooSmall);
        }
        if self.position > MESSAGE_LENGTH_MAX {
            return Err(EncodeError::Oversized);
        }
        Ok(self.position)
    }
}

/// "00" to "99": two digits per table access when formatting.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut table = [[0u8; 2]; 100];
    let mut n = 0;
    while n < 100 {
        table[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    table
};

/// Number of decimal digits of `value` (1 for 0).
#[inline]
fn decimal_digits(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Writes the digits of `value` right-aligned in `out`, two at a time; `out` must be at least
/// [`decimal_digits`] long (a longer `out` keeps its leading bytes).
#[inline]
fn write_digits(mut value: u64, out: &mut [u8]) {
    let mut at = out.len();
    while value >= 100 {
        at -= 2;
        out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[(value % 100) as usize]);
        value /= 100;
    }
    if value >= 10 {
        at -= 2;
        out[at..at + 2].copy_from_slice(&DIGIT_PAIRS[value as usize]);
    } else {
        at -= 1;
        out[at] = b'0' + value as u8;
    }
}

/// Longest text [`format_decimal`] writes: sign, 39 digits of an i128, point, up to 128 zeros.
pub const DECIMAL_TEXT_MAX: usize = 176;

/// Writes `value` digits right-aligned into `digits`; returns the index of the first digit.
fn format_u128(mut value: u128, digits: &mut [u8]) -> usize {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            return at;
        }
    }
}

/// Formats `value × 10^exponent` exactly, dropping trailing fractional zeros; returns the length.
pub fn format_decimal(value: i128, exponent: i8, out: &mut [u8; DECIMAL_TEXT_MAX]) -> usize {
    let mut digits = [0u8; 40];
    let first = format_u128(value.unsigned_abs(), &mut digits);
    let digits = &digits[first..];
    let mut length = 0;
    let mut push = |byte: u8, length: &mut usize| {
        out[*length] = byte;
        *length += 1;
    };
    if value < 0 {
        push(b'-', &mut length);
    }
    if exponent >= 0 {
        for &digit in digits {
            push(digit, &mut length);
        }
        if value != 0 {
            for _ in 0..exponent {
                push(b'0', &mut length);
            }
        }
        return length;
    }
    let fraction_digits = usize::from(exponent.unsigned_abs());
    // Integer part.
    if digits.len() > fraction_digits {
        for &digit in &digits[..digits.len() - fraction_digits] {
            push(digit, &mut length);
        }
    } else {
        push(b'0', &mut length);
    }
    // Fraction, left-padded with zeros, trailing zeros dropped.
    let mut fraction = [b'0'; 128];
    let fraction = &mut fraction[..fraction_digits];
    let available = digits.len().min(fraction_digits);
    fraction[fraction_digits - available..].copy_from_slice(&digits[digits.len() - available..]);
    let kept = fraction
        .iter()
        .rposition(|&digit| digit != b'0')
        .map_or(0, |last| last + 1);
    if kept > 0 {
        push(b'.', &mut length);
        for &digit in &fraction[..kept] {
            push(digit, &mut length);
        }
    }
    length
}

/// Length of a UTCTimestamp with milliseconds.
pub const TIMESTAMP_LENGTH: usize = 21;

/// `YYYYMMDD-HH:MM:SS.sss` for nanoseconds since the Unix epoch (UTC; proleptic Gregorian).
pub fn format_timestamp(unix_ns: u64) -> [u8; TIMESTAMP_LENGTH] {
    let seconds = unix_ns / 1_000_000_000;
    let millis = (unix_ns / 1_000_000) % 1000;
    let days = seconds / 86_400;
    let second_of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60,
    );
    let mut out = [0u8; TIMESTAMP_LENGTH];
    // Every value below 100 except the year (4 digits, below 10,000 for any u64 of ns: year
    // 2554 at most) and the milliseconds (3 digits).
    let pair = |value: u64| DIGIT_PAIRS[value as usize % 100];
    out[0..2].copy_from_slice(&pair(year / 100));
    out[2..4].copy_from_slice(&pair(year));
    out[4..6].copy_from_slice(&pair(month));
    out[6..8].copy_from_slice(&pair(day));
    out[9..11].copy_from_slice(&pair(hour));
    out[12..14].copy_from_slice(&pair(minute));
    out[15..17].copy_from_slice(&pair(second));
    out[18] = b'0' + (millis / 100) as u8;
    out[19..21].copy_from_slice(&pair(millis));
    out[8] = b'-';
    out[11] = b':';
    out[14] = b':';
    out[17] = b'.';
    out
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// FIX text with `|` for SOH, as in the spec's examples.
    pub(crate) fn fix(text: &str) -> Vec<u8> {
        text.bytes()
            .map(|byte| if byte == b'|' { SOH } else { byte })
            .collect()
    }

    fn show(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).replace('\u{1}', "|")
    }

    #[test]
    fn encodes_exact_bytes_with_body_length_and_checksum() {
        let mut buffer = [0u8; 256];
        let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"0");
        writer.bytes(tags::SENDER_COMP_ID, b"EXCH");
        writer.bytes(tags::TARGET_COMP_ID, b"CLIENT1");
        writer.u64(tags::MSG_SEQ_NUM, 2);
        writer.timestamp(tags::SENDING_TIME, 1_700_000_000_123_456_789);
        let length = writer.finish().unwrap();
        let body = "35=0|49=EXCH|56=CLIENT1|34=2|52=20231114-22:13:20.123|";
        let head = format!("8=FIX.4.4|9={}|{body}", body.len());
        let sum = checksum(&fix(&head));
        assert_eq!(show(&buffer[..length]), format!("{head}10={sum:03}|"));
        assert_eq!(
            frame(&buffer[..length]),
            Ok(Framed::Complete { length }),
            "what we write frames"
        );
    }

    #[test]
    fn known_message_checksum() {
        // A heartbeat computed by hand: body length 49... checked against our own framing.
        let bytes = fix("8=FIX.4.2|9=5|35=0|10=161|");
        assert_eq!(checksum(&bytes[..bytes.len() - 7]), 161);
        assert_eq!(
            frame(&bytes),
            Ok(Framed::Complete {
                length: bytes.len()
            })
        );
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.msg_type(), b"0");
        assert_eq!(message.begin_string(), b"FIX.4.2");
    }

    #[test]
    fn frame_errors_are_precise() {
        assert_eq!(frame(b""), Ok(Framed::Incomplete));
        assert_eq!(frame(b"8"), Ok(Framed::Incomplete));
        assert_eq!(frame(&fix("8=FIX.4.4|9=12")), Ok(Framed::Incomplete));
        assert_eq!(frame(b"X"), Err(FrameError::Garbled));
        assert_eq!(frame(&fix("8=|")), Err(FrameError::Garbled));
        assert_eq!(
            frame(&fix("8=FIX.4.4.4.4.4.4.4.4|")),
            Err(FrameError::Garbled)
        );
        assert_eq!(
            frame(&fix("8=FIX.4.4|35=0|")),
            Err(FrameError::MissingBodyLength)
        );
        assert_eq!(
            frame(&fix("8=FIX.4.4|9=x|")),
            Err(FrameError::BadBodyLength)
        );
        assert_eq!(frame(&fix("8=FIX.4.4|9=|")), Err(FrameError::BadBodyLength));
        assert_eq!(
            frame(&fix("8=FIX.4.4|9=99999|")),
            Err(FrameError::Oversized { length: 9999 })
        );
        assert_eq!(
            frame(&fix("8=FIX.4.4|9=8180|")),
            Err(FrameError::Oversized { length: 8204 })
        );
        // Body length one too long: it waits for one more byte, then the trailer is not where
        // BodyLength points.
        assert_eq!(
            frame(&fix("8=FIX.4.2|9=6|35=0|10=161|")),
            Ok(Framed::Incomplete)
        );
        assert_eq!(
            frame(&fix("8=FIX.4.2|9=6|35=0|10=161|8=FIX.4.2|")),
            Err(FrameError::BadBodyLength)
        );
        // One too short.
        assert_eq!(
            frame(&fix("8=FIX.4.2|9=4|35=0|10=161|")),
            Err(FrameError::BadBodyLength)
        );
        let bad_sum = frame(&fix("8=FIX.4.2|9=5|35=0|10=162|"));
        assert_eq!(
            bad_sum,
            Err(FrameError::BadChecksum {
                computed: 161,
                received: 162
            })
        );
        assert_eq!(
            frame_length_unchecked(&fix("8=FIX.4.2|9=5|35=0|10=162|")),
            Some(26)
        );
    }

    #[test]
    fn parse_errors_are_precise() {
        let with_body = |body: &str| {
            let head = format!("8=FIX.4.4|9={}|{body}", body.len());
            let sum = checksum(&fix(&head));
            fix(&format!("{head}10={sum:03}|"))
        };
        assert_eq!(
            Message::parse(&with_body("35=0|58=|")).unwrap_err(),
            ParseError::EmptyValue { tag: 58 }
        );
        assert!(matches!(
            Message::parse(&with_body("35=0|x=1|")).unwrap_err(),
            ParseError::InvalidTag { .. }
        ));
        assert!(matches!(
            Message::parse(&with_body("35=0|058=1|")).unwrap_err(),
            ParseError::InvalidTag { .. }
        ));
        assert!(matches!(
            Message::parse(&with_body("35=0|1000000=1|")).unwrap_err(),
            ParseError::InvalidTag { .. }
        ));
        assert_eq!(
            Message::parse(&with_body("49=A|35=0|")).unwrap_err(),
            ParseError::HeaderOrder
        );
        let many = "58=x|".repeat(FIELDS_MAX);
        assert_eq!(
            Message::parse(&with_body(&format!("35=0|{many}"))).unwrap_err(),
            ParseError::TooManyFields
        );
        let bytes = with_body("35=D|34=7|11=a|11=b|54=x|44=1.5|");
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.required_u64(34), Ok(7));
        assert_eq!(message.required(11), Err(FieldError::Duplicate { tag: 11 }));
        assert_eq!(message.required(38), Err(FieldError::Missing { tag: 38 }));
        assert_eq!(
            message.required_u64(44),
            Err(FieldError::Format { tag: 44 })
        );
        assert_eq!(message.required_char(54), Ok(b'x'));
        assert_eq!(parse_decimal(message.get(44).unwrap(), -2), Ok(150));
        assert_eq!(
            parse_decimal(b"1.005", -2),
            Err(DecimalError::Precision),
            "off the unit is an error, never a rounding"
        );
        assert_eq!(parse_decimal(b"1e5", 0), Err(DecimalError::Syntax));
    }

    #[test]
    fn decimals_and_timestamps() {
        let text = |value: i128, exponent: i8| {
            let mut out = [0u8; DECIMAL_TEXT_MAX];
            let length = format_decimal(value, exponent, &mut out);
            String::from_utf8(out[..length].to_vec()).unwrap()
        };
        assert_eq!(text(10125, -2), "101.25");
        assert_eq!(text(10120, -2), "101.2");
        assert_eq!(text(10000, -2), "100");
        assert_eq!(text(-5, -3), "-0.005");
        assert_eq!(text(0, -2), "0");
        assert_eq!(text(0, 3), "0");
        assert_eq!(text(3, 2), "300");
        assert_eq!(text(i128::MIN + 1, -18).len(), 41);
        assert_eq!(&format_timestamp(0), b"19700101-00:00:00.000");
        assert_eq!(
            &format_timestamp(951_782_400_999_000_000),
            b"20000229-00:00:00.999"
        );
        assert_eq!(
            &format_timestamp(1_704_067_199_000_000_000),
            b"20231231-23:59:59.000"
        );
    }

    /// A framed message with this body (MsgType first), as bytes.
    fn with_body(body: &str) -> Vec<u8> {
        let head = format!("8=FIX.4.4|9={}|{body}", body.len());
        let sum = checksum(&fix(&head));
        fix(&format!("{head}10={sum:03}|"))
    }

    #[test]
    fn exact_decimals_edge_cases() {
        use DecimalError::{Precision, Range, Syntax};
        let cases: &[(&str, i8, Result<i64, DecimalError>)] = &[
            ("101.25", -2, Ok(10125)),
            ("101.2", -2, Ok(10120)),
            ("101", -2, Ok(10100)),
            ("101.", -2, Ok(10100)),
            (".25", -2, Ok(25)),
            ("+1.5", -1, Ok(15)),
            // Leading and trailing zeros.
            ("000123.4500", -2, Ok(12345)),
            ("0000000000000000000000000000000000000001", 0, Ok(1)),
            ("1.000000000000000000000000000000000000", -2, Ok(100)),
            ("0.000", 2, Ok(0)),
            ("-0", 0, Ok(0)),
            ("-0.00", -2, Ok(0)),
            ("0", -128, Ok(0)),
            // Negative values.
            ("-0.5", -2, Ok(-50)),
            ("-101.25", -2, Ok(-10125)),
            // Positive exponents: whole multiples of the unit only.
            ("300", 2, Ok(3)),
            ("3", 2, Err(Precision)),
            ("1000000000000000000000000000000", 25, Ok(100_000)),
            ("1", 127, Err(Precision)),
            // Too many decimals: an error, never a rounding.
            ("1.005", -2, Err(Precision)),
            ("0.001", -2, Err(Precision)),
            (
                "0.00000000000000000000000000000000000001",
                -2,
                Err(Precision),
            ),
            // Digits below the unit rank before the range.
            ("99999999999999999999999.5", 0, Err(Precision)),
            // Max digits: the edges of i64.
            ("9223372036854775807", 0, Ok(i64::MAX)),
            ("9223372036854775808", 0, Err(Range)),
            ("-9223372036854775808", 0, Ok(i64::MIN)),
            ("-9223372036854775809", 0, Err(Range)),
            ("92233720368547758.07", -2, Ok(i64::MAX)),
            ("92233720368547758.08", -2, Err(Range)),
            ("18446744073709551615", 0, Err(Range)),
            ("18446744073709551616", 0, Err(Range)),
            ("9999999999999999999999999999999999999999", 0, Err(Range)),
            ("1", -18, Ok(1_000_000_000_000_000_000)),
            ("1", -19, Err(Range)),
            ("1", -20, Err(Range)),
            ("1.5", -128, Err(Range)),
            // Length: at most 40 bytes.
            ("0000000000000000000000000000000000000000", 0, Ok(0)),
            ("00000000000000000000000000000000000000000", 0, Err(Syntax)),
            // Not `[-+]digits[.digits]`.
            ("", -2, Err(Syntax)),
            ("-", -2, Err(Syntax)),
            ("+", -2, Err(Syntax)),
            (".", -2, Err(Syntax)),
            ("-.", -2, Err(Syntax)),
            ("1.2.3", -2, Err(Syntax)),
            ("1e5", 0, Err(Syntax)),
            (" 1", 0, Err(Syntax)),
            ("1 ", 0, Err(Syntax)),
            ("1,5", -1, Err(Syntax)),
            ("+-1", 0, Err(Syntax)),
            ("--1", 0, Err(Syntax)),
            ("1-", 0, Err(Syntax)),
            ("0x10", 0, Err(Syntax)),
            ("１", 0, Err(Syntax)),
        ];
        for &(text, exponent, expected) in cases {
            assert_eq!(
                parse_decimal(text.as_bytes(), exponent),
                expected,
                "{text:?} in units of 10^{exponent}"
            );
        }
        assert_eq!(parse_decimal(&[0xff], 0), Err(Syntax));
        assert_eq!(parse_decimal(b"1\x005", 0), Err(Syntax));
    }

    #[test]
    fn duplicate_tags_are_found_during_the_parse() {
        // Indexed tags (below INDEXED_TAGS), the edges of the index, and tags above it (8000
        // and 128 share a filter bit, as do 554 and 170).
        let bytes = with_body(
            "35=D|34=7|11=a|11=b|127=x|127=y|128=p|8000=N|8000=O|554=s|1=acct|99999=z|99999=w|",
        );
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.field_count(), 16);
        for tag in [11, 127, 8000, 99_999] {
            assert_eq!(message.optional(tag), Err(FieldError::Duplicate { tag }));
            assert_eq!(message.required(tag), Err(FieldError::Duplicate { tag }));
            assert_eq!(
                message.optional_char(tag),
                Err(FieldError::Duplicate { tag })
            );
        }
        assert_eq!(message.get(11), Some(&b"a"[..]), "get gives the first");
        assert_eq!(message.get(127), Some(&b"x"[..]));
        assert_eq!(message.get(8000), Some(&b"N"[..]));
        assert_eq!(message.get(99_999), Some(&b"z"[..]));
        assert_eq!(message.optional(128), Ok(Some(&b"p"[..])));
        assert_eq!(message.optional(554), Ok(Some(&b"s"[..])));
        assert_eq!(message.optional(1), Ok(Some(&b"acct"[..])));
        assert_eq!(message.required_u64(34), Ok(7));
        // Absent, whether or not a present tag shares the filter bit.
        for tag in [0, 2, 126, 170, 192, 8064, 99_998, 100_000, u32::MAX] {
            assert_eq!(message.get(tag), None, "tag {tag}");
            assert_eq!(message.optional(tag), Ok(None), "tag {tag}");
            assert_eq!(message.required(tag), Err(FieldError::Missing { tag }));
        }
        // Header tags repeated.
        let bytes = with_body("35=D|34=7|49=A|34=8|");
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(
            message.required_u64(tags::MSG_SEQ_NUM),
            Err(FieldError::Duplicate { tag: 34 })
        );
        assert_eq!(message.get(tags::MSG_SEQ_NUM), Some(&b"7"[..]));
        assert_eq!(message.required(tags::SENDER_COMP_ID), Ok(&b"A"[..]));
        // A repeated MsgType: the first is the MsgType, the repeat is reported.
        let bytes = with_body("35=D|35=8|");
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.msg_type(), b"D");
        assert_eq!(
            message.optional(tags::MSG_TYPE),
            Err(FieldError::Duplicate { tag: 35 })
        );
    }

    #[test]
    fn soh_search_finds_every_position() {
        for length in 0..40 {
            for soh in 0..=length {
                let mut bytes = vec![b'x'; length];
                if soh < length {
                    bytes[soh] = SOH;
                }
                for start in 0..=length {
                    let expected = (start..length)
                        .find(|&at| bytes[at] == SOH)
                        .unwrap_or(length);
                    assert_eq!(find_soh(&bytes, start), expected, "{length} {soh} {start}");
                }
            }
        }
        // Bytes next to SOH in value (0x00, 0x02, 0x81) are not SOH.
        let bytes = [0x00, 0x02, 0x81, 0x80, 0xff, 0x00, 0x02, 0x03, 0x01, 0x01];
        assert_eq!(find_soh(&bytes, 0), 8);
    }

    #[test]
    fn decimal_and_integer_edges() {
        let written = |value: i128, exponent: i8| {
            let mut buffer = [0u8; 512];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"8");
            writer.decimal(tags::PRICE, value, exponent);
            let length = writer.finish().unwrap();
            let message = Message::parse(&buffer[..length]).unwrap();
            String::from_utf8(message.get(tags::PRICE).unwrap().to_vec()).unwrap()
        };
        let max = i128::from(u64::MAX);
        for (value, exponent, text) in [
            (max, 0, "18446744073709551615"),
            (-max, 0, "-18446744073709551615"),
            (max, -19, "1.8446744073709551615"),
            (-max, -19, "-1.8446744073709551615"),
            (max, -20, "0.18446744073709551615"),
            (max + 1, 0, "18446744073709551616"),
            (-max - 1, -2, "-184467440737095516.16"),
            (max, 1, "184467440737095516150"),
            (1, 19, "10000000000000000000"),
            (1, 20, "100000000000000000000"),
            (0, 19, "0"),
            (0, -19, "0"),
            (10_000_000_000_000_000_000, -19, "1"),
            (10_000_000_000_000_000_001, -19, "1.0000000000000000001"),
            (1, -19, "0.0000000000000000001"),
            (-1, -20, "-0.00000000000000000001"),
            (100_500, -4, "10.05"),
            (100_000, -4, "10"),
            (-7, 0, "-7"),
            (9, -1, "0.9"),
            (99, -1, "9.9"),
            (100, -1, "10"),
        ] {
            assert_eq!(written(value, exponent), text, "{value} x 10^{exponent}");
        }
        let mut buffer = [0u8; 4096];
        let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"0");
        let mut values = vec![0, u64::MAX, u64::MAX - 1];
        for power in POW10 {
            values.extend([power - 1, power, power + 1]);
        }
        for (index, value) in values.iter().enumerate() {
            writer.u64(1000 + index as u32, *value);
        }
        let length = writer.finish().unwrap();
        let message = Message::parse(&buffer[..length]).unwrap();
        for (index, value) in values.iter().enumerate() {
            assert_eq!(
                message.get(1000 + index as u32),
                Some(value.to_string().as_bytes())
            );
        }
        assert_eq!(
            &format_timestamp(u64::MAX),
            b"25540721-23:34:33.709",
            "the latest time a u64 of ns holds"
        );
    }

    fn field_value() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(0x20u8..0x7f, 1..24)
    }

    proptest! {
        #[test]
        fn decimal_fields_are_format_decimal(
            value in prop_oneof![
                any::<i64>().prop_map(i128::from),
                any::<u64>().prop_map(i128::from),
                any::<u64>().prop_map(|v| -i128::from(v)),
                any::<i128>(),
                -100_000i128..100_000,
            ],
            exponent in prop_oneof![-21i8..=21, any::<i8>()],
        ) {
            let mut buffer = [0u8; 512];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"8");
            writer.decimal(tags::PRICE, value, exponent);
            let length = writer.finish().unwrap();
            let message = Message::parse(&buffer[..length]).unwrap();
            let mut text = [0u8; DECIMAL_TEXT_MAX];
            let text_length = format_decimal(value, exponent, &mut text);
            prop_assert_eq!(message.get(tags::PRICE), Some(&text[..text_length]));
        }

        #[test]
        fn integers_and_timestamps_are_written_exactly(value in any::<u64>(), tag in 1u32..=TAG_MAX) {
            let mut buffer = [0u8; 256];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"0");
            writer.u64(tag, value);
            writer.timestamp(tags::SENDING_TIME, value);
            let length = writer.finish().unwrap();
            let message = Message::parse(&buffer[..length]).unwrap();
            let fields: Vec<_> = message.fields().skip(3).collect();
            let text = value.to_string();
            prop_assert_eq!(fields[0], (tag, text.as_bytes()));
            // The timestamp against a digit-by-digit rendering of the same calendar fields.
            let seconds = value / 1_000_000_000;
            let (year, month, day) = civil_from_days(seconds / 86_400);
            let expected = format!(
                "{year:04}{month:02}{day:02}-{:02}:{:02}:{:02}.{:03}",
                seconds % 86_400 / 3600,
                seconds % 3600 / 60,
                seconds % 60,
                value / 1_000_000 % 1000
            );
            prop_assert_eq!(fields[1], (tags::SENDING_TIME, expected.as_bytes()));
        }

        #[test]
        fn exact_decimals_agree_with_the_matcher(
            text in "[-+]?[0-9]{0,19}(\\.[0-9]{0,18})?",
            junk in "[-+.0-9a ]{0,12}",
            exponent in -22i8..=22,
        ) {
            // At most 37 digits: the matcher's i128 mantissa cannot overflow.
            for text in [&text, &junk] {
                prop_assert_eq!(
                    parse_decimal(text.as_bytes(), exponent),
                    matcher::decimal::parse_units(text, exponent),
                    "{:?} in units of 10^{}", text, exponent
                );
            }
        }

        #[test]
        fn accessors_agree_with_a_scan_of_the_fields(
            fields in proptest::collection::vec(
                (prop::sample::select(vec![1u32, 11, 34, 44, 63, 64, 127, 128, 191, 554, 8000,
                    99_999]), field_value()),
                0..24),
        ) {
            let mut buffer = vec![0u8; MESSAGE_LENGTH_MAX];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"D");
            for (tag, value) in &fields {
                writer.bytes(*tag, value);
            }
            let length = writer.finish().unwrap();
            let message = Message::parse(&buffer[..length]).unwrap();
            prop_assert_eq!(message.field_count(), fields.len() + 4);
            let listed: Vec<_> = message.fields().skip(3).take(fields.len()).collect();
            let expected: Vec<_> = fields.iter().map(|(tag, value)| (*tag, &value[..])).collect();
            prop_assert_eq!(listed, expected);
            for tag in [1u32, 11, 34, 44, 63, 64, 127, 128, 191, 192, 554, 8000, 99_999] {
                let values: Vec<&[u8]> =
                    fields.iter().filter(|(t, _)| *t == tag).map(|(_, v)| &v[..]).collect();
                prop_assert_eq!(message.get(tag), values.first().copied());
                let optional = match values.len() {
                    0 => Ok(None),
                    1 => Ok(Some(values[0])),
                    _ => Err(FieldError::Duplicate { tag }),
                };
                prop_assert_eq!(message.optional(tag), optional);
            }
        }

        #[test]
        fn round_trip(
            msg_type in "[0-9A-Za-z]{1,2}",
            fields in proptest::collection::vec(
                (11u32..=TAG_MAX, field_value()), 0..40),
            decimals in proptest::collection::vec((any::<i64>(), -18i8..=18), 0..4),
        ) {
            let fields: Vec<_> =
                fields.into_iter().filter(|(tag, _)| *tag != tags::MSG_TYPE).collect();
            let mut buffer = vec![0u8; MESSAGE_LENGTH_MAX];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", msg_type.as_bytes());
            for (tag, value) in &fields {
                writer.bytes(*tag, value);
            }
            for (value, exponent) in &decimals {
                writer.decimal(tags::PRICE, i128::from(*value), *exponent);
            }
            let length = writer.finish().unwrap();
            prop_assert_eq!(frame(&buffer[..length]), Ok(Framed::Complete { length }));
            let message = Message::parse(&buffer[..length]).unwrap();
            prop_assert_eq!(message.msg_type(), msg_type.as_bytes());
            let parsed: Vec<_> = message.fields().skip(3).collect();
            prop_assert_eq!(parsed.len(), fields.len() + decimals.len() + 1);
            for ((tag, value), (parsed_tag, parsed_value)) in fields.iter().zip(&parsed) {
                prop_assert_eq!(*tag, *parsed_tag);
                prop_assert_eq!(&value[..], *parsed_value);
            }
            for ((value, exponent), (_, text)) in
                decimals.iter().zip(&parsed[fields.len()..])
            {
                prop_assert_eq!(parse_decimal(text, *exponent), Ok(*value));
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = frame(&bytes);
            let _ = frame_length_unchecked(&bytes);
            if let Ok(message) = Message::parse(&bytes) {
                let _ = message.required_u64(34);
                let _ = message.optional_bool(43);
            }
        }

        #[test]
        fn mutated_messages_never_panic_and_frame_or_fail(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut buffer = [0u8; 256];
            let mut writer = Writer::new(&mut buffer, b"FIX.4.4", b"D");
            writer.bytes(tags::SENDER_COMP_ID, b"C");
            writer.u64(tags::MSG_SEQ_NUM, 2);
            writer.bytes(tags::CL_ORD_ID, b"A1");
            writer.decimal(tags::PRICE, 10125, -2);
            let length = writer.finish().unwrap();
            let mut bytes = buffer[..length].to_vec();
            let complete = matches!(frame(&bytes), Ok(Framed::Complete { .. }));
            prop_assert!(complete);
            for (index, value) in flips {
                let at = index.index(bytes.len());
                bytes[at] = value;
            }
            let bytes = &bytes[..=cut.index(bytes.len())];
            match frame(bytes) {
                Ok(Framed::Complete { length }) => {
                    let _ = Message::parse(&bytes[..length]);
                }
                Ok(Framed::Incomplete) | Err(_) => {}
            }
        }
    }
}

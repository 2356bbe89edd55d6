//! The pprof wire format: prost messages with the field numbers of pprof's `profile.proto`.
//!
//! Written by hand (no protoc at build time). Every message and field of the upstream schema is
//! here, so a profile read from any pprof producer round-trips without loss. Strings are indices
//! into [`Profile::string_table`], whose entry 0 is always `""`; ids start at 1.

/// A whole profile: sample types, samples and the tables they point into.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Profile {
    /// What each value of a sample measures, in order (e.g. `samples/count`, `cpu/nanoseconds`).
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    /// The measurements: one stack and one value per sample type.
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    /// Loaded binaries the addresses fall into.
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    /// Program counters, with their (possibly inlined) source lines once symbolized.
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    /// Functions referenced by location lines.
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    /// All strings of the profile; index 0 is `""`.
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    /// Regexp (string index) of frames to drop from the top of stacks.
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    /// Regexp (string index) of frames to keep despite `drop_frames`.
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    /// When the profile was collected, nanoseconds since the Unix epoch.
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    /// How long collection lasted.
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    /// The kind of event between samples (e.g. `cpu/nanoseconds`).
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    /// The number of `period_type` units between samples.
    #[prost(int64, tag = "12")]
    pub period: i64,
    /// Free-form comments (string indices).
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    /// Index into `string_table` of the sample type shown by default.
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
    /// Documentation link for the profile's sample types (string index).
    #[prost(int64, tag = "15")]
    pub doc_url: i64,
}

/// A type and unit of a value, both string indices.
#[derive(Clone, Copy, PartialEq, Eq, Hash, prost::Message)]
pub struct ValueType {
    /// e.g. `cpu`, `alloc_space` (string index).
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    /// e.g. `nanoseconds`, `bytes` (string index).
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

/// One measured stack.
///
/// Its protobuf encoding is written by hand rather than derived (see the `Message` impl below):
/// the same wire format, but the packed `location_id` and `value` lists are sized before they
/// are filled and decoded in a tight loop, as a profile can have a million samples of 20-60
/// frames each.
#[derive(Clone, Default, PartialEq)]
pub struct Sample {
    /// Location ids, leaf first (field 1, packed `uint64`).
    pub location_id: Vec<u64>,
    /// One value per entry of [`Profile::sample_type`] (field 2, packed `int64`).
    pub value: Vec<i64>,
    /// Extra key/value context (field 3).
    pub label: Vec<Label>,
}

impl std::fmt::Debug for Sample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sample")
            .field("location_id", &self.location_id)
            .field("value", &self.value)
            .field("label", &self.label)
            .finish()
    }
}

/// The varint at the start of `bytes` and its length in bytes; `None` when `bytes` ends inside
/// it or it overflows 64 bits.
fn varint_at(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        if i == 9 && b > 1 {
            return None;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Decode the packed varint field at the front of `buf` (length prefix, then the varints)
/// into `out`, sized first, in one tight loop over the bytes, and consume it. Returns `false`,
/// with nothing consumed or added, when the field is not wholly in `buf`'s current chunk
/// (always so for a slice) or is malformed: prost's general path then decodes it or reports
/// the error.
fn merge_packed<T>(buf: &mut impl prost::bytes::Buf, out: &mut Vec<T>, from: fn(u64) -> T) -> bool {
    let chunk = buf.chunk();
    let Some((len, prefix)) = varint_at(chunk) else {
        return false;
    };
    let Some(body) = usize::try_from(len)
        .ok()
        .and_then(|len| chunk.get(prefix..prefix.checked_add(len)?))
    else {
        return false;
    };
    let start = out.len();
    // Every varint ends with the one byte whose high bit is clear.
    out.reserve_exact(body.iter().filter(|&&b| b & 0x80 == 0).count());
    let mut i = 0;
    while i < body.len() {
        // Ids and counts are mostly 1 to 3 bytes long: those without the general loop.
        let b0 = body[i];
        if b0 & 0x80 == 0 {
            out.push(from(u64::from(b0)));
            i += 1;
            continue;
        }
        if let Some(&b1) = body.get(i + 1) {
            let v = u64::from(b0 & 0x7f) | u64::from(b1 & 0x7f) << 7;
            if b1 & 0x80 == 0 {
                out.push(from(v));
                i += 2;
                continue;
            }
            if let Some(&b2) = body.get(i + 2) {
                if b2 & 0x80 == 0 {
                    out.push(from(v | u64::from(b2) << 14));
                    i += 3;
                    continue;
                }
            }
        }
        let Some((value, n)) = varint_at(&body[i..]) else {
            out.truncate(start);
            return false;
        };
        out.push(from(value));
        i += n;
    }
    let consumed = prefix + body.len();
    buf.advance(consumed);
    true
}

impl prost::Message for Sample {
    fn encode_raw(&self, buf: &mut impl prost::bytes::BufMut) {
        prost::encoding::uint64::encode_packed(1, &self.location_id, buf);
        prost::encoding::int64::encode_packed(2, &self.value, buf);
        prost::encoding::message::encode_repeated(3, &self.label, buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl prost::bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        use prost::encoding::{int64, message, skip_field, uint64, WireType};
        let packed = wire_type == WireType::LengthDelimited;
        match tag {
            1 if packed && merge_packed(buf, &mut self.location_id, |v| v) => Ok(()),
            2 if packed && merge_packed(buf, &mut self.value, |v| v as i64) => Ok(()),
            1 => uint64::merge_repeated(wire_type, &mut self.location_id, buf, ctx).map_err(
                |mut e| {
                    e.push("Sample", "location_id");
                    e
                },
            ),
            2 => int64::merge_repeated(wire_type, &mut self.value, buf, ctx).map_err(|mut e| {
                e.push("Sample", "value");
                e
            }),
            3 => message::merge_repeated(wire_type, &mut self.label, buf, ctx).map_err(|mut e| {
                e.push("Sample", "label");
                e
            }),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        prost::encoding::uint64::encoded_len_packed(1, &self.location_id)
            + prost::encoding::int64::encoded_len_packed(2, &self.value)
            + prost::encoding::message::encoded_len_repeated(3, &self.label)
    }

    fn clear(&mut self) {
        self.location_id.clear();
        self.value.clear();
        self.label.clear();
    }
}

/// A key/value annotation of a sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Key (string index).
    #[prost(int64, tag = "1")]
    pub key: i64,
    /// String value (string index), or 0 when numeric.
    #[prost(int64, tag = "2")]
    pub str: i64,
    /// Numeric value.
    #[prost(int64, tag = "3")]
    pub num: i64,
    /// Unit of `num` (string index).
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

/// A binary mapped into the profiled process's memory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mapping {
    /// Unique id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// First address of the mapping.
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    /// One past its last address.
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    /// File offset that `memory_start` maps.
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    /// Path of the binary (string index).
    #[prost(int64, tag = "5")]
    pub filename: i64,
    /// Hex GNU build id (string index).
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    /// Locations of this mapping carry function names.
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    /// ... file names.
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    /// ... line numbers.
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    /// ... inlined frames.
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

/// One program counter and, once symbolized, the source lines it stands for.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Location {
    /// Unique id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Mapping the address falls into, or 0.
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    /// The instruction address (a return address except for leaves).
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Source lines, innermost (most inlined) first.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    /// Several frames were folded into this location.
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

/// A function and line within a location.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Line {
    /// The function (id into [`Profile::function`]).
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    /// Source line, or 0 when unknown.
    #[prost(int64, tag = "2")]
    pub line: i64,
    /// Source column, or 0 when unknown.
    #[prost(int64, tag = "3")]
    pub column: i64,
}

/// A function: names, file and first line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Function {
    /// Unique id, from 1.
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human-readable name (string index): the demangled Rust path without hash.
    #[prost(int64, tag = "2")]
    pub name: i64,
    /// Name as it appears in the binary (string index): the mangled symbol.
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    /// Source file (string index).
    #[prost(int64, tag = "4")]
    pub filename: i64,
    /// First line of the function.
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// `Sample` as prost would derive it: the hand-written encoding must be the same.
    #[derive(Clone, PartialEq, prost::Message)]
    struct DerivedSample {
        #[prost(uint64, repeated, tag = "1")]
        location_id: Vec<u64>,
        #[prost(int64, repeated, tag = "2")]
        value: Vec<i64>,
        #[prost(message, repeated, tag = "3")]
        label: Vec<Label>,
    }

    fn samples() -> Vec<(Sample, DerivedSample)> {
        let label = Label {
            key: 3,
            str: 0,
            num: 4096,
            num_unit: 5,
        };
        [
            (vec![], vec![], vec![]),
            (vec![1, 2, 3], vec![1, 10_000_000], vec![]),
            // Ids and values of every varint length, negative values, labels.
            (
                vec![127, 128, 16_383, 16_384, u64::MAX, 1 << 35],
                vec![-1, 0, i64::MIN, i64::MAX],
                vec![label.clone(), label],
            ),
        ]
        .into_iter()
        .map(|(location_id, value, label)| {
            (
                Sample {
                    location_id: location_id.clone(),
                    value: value.clone(),
                    label: label.clone(),
                },
                DerivedSample {
                    location_id,
                    value,
                    label,
                },
            )
        })
        .collect()
    }

    #[test]
    fn sample_encoding_is_the_derived_one() {
        for (ours, derived) in samples() {
            let bytes = ours.encode_to_vec();
            assert_eq!(bytes, derived.encode_to_vec());
            assert_eq!(ours.encoded_len(), bytes.len());
            assert_eq!(Sample::decode(bytes.as_slice()).unwrap(), ours);
            assert_eq!(DerivedSample::decode(bytes.as_slice()).unwrap(), derived);
        }
    }

    #[test]
    fn sample_decodes_unpacked_and_split_fields() {
        // Field 1 unpacked (wire type 0), then a packed run of field 1, then field 2 unpacked:
        // all allowed by protobuf, and appended in order.
        let bytes = [0x08, 0x07, 0x0a, 0x02, 0x81, 0x01, 0x10, 0x05, 0x10, 0x7f];
        let s = Sample::decode(&bytes[..]).unwrap();
        assert_eq!(s.location_id, vec![7, 129]);
        assert_eq!(s.value, vec![5, 127]);
        // A packed field whose length runs past the end is an error, not a short list.
        assert!(Sample::decode(&[0x0a, 0x05, 0x01][..]).is_err());
        // A varint longer than 64 bits inside a packed field is an error.
        let mut overlong = vec![0x0a, 0x0b];
        overlong.extend([0xff; 10]);
        overlong.push(0x01);
        assert!(Sample::decode(overlong.as_slice()).is_err());
        // A field split across chunks (a chained buffer) takes prost's general path.
        use prost::bytes::Buf;
        let (a, b) = bytes.split_at(4);
        let s = Sample::decode(a.chain(b)).unwrap();
        assert_eq!(s.location_id, vec![7, 129]);
        assert_eq!(s.value, vec![5, 127]);
        // An unknown field is skipped.
        let s = Sample::decode(&[0x20, 0x01, 0x08, 0x02][..]).unwrap();
        assert_eq!(s.location_id, vec![2]);
    }
}

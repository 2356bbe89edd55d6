//! Reading and writing profile files: gzip-compressed protobuf, as every pprof tool expects.
//!
//! Writers always compress; readers accept raw protobuf too. Decoding validates the message
//! against pprof's invariants, so a file that merely happens to parse as protobuf (a text file,
//! some other message) is refused with a reason instead of producing an empty report.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use prost::Message;

use crate::proto::Profile;
use crate::{Error, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// How hard to compress a profile file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// gzip's default level, for the profiles users keep and share.
    Default,
    /// gzip's fastest level, for intermediate files read back once (raw profiles written at a
    /// profiled program's exit, where every millisecond is the program's).
    Fast,
}

/// Encode `profile` as gzip-compressed protobuf.
pub fn encode(profile: &Profile) -> Vec<u8> {
    encode_packed(profile, Packing::Default)
}

/// Encode `profile` as gzip-compressed protobuf, compressed as `packing` says.
pub fn encode_packed(profile: &Profile, packing: Packing) -> Vec<u8> {
    let raw = profile.encode_to_vec();
    let level = match packing {
        Packing::Default => flate2::Compression::default(),
        Packing::Fast => flate2::Compression::fast(),
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 3 + 64), level);
    gz.write_all(&raw).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

/// What the decoder accepts at most, so that no input, however crafted, makes a reader use
/// unbounded memory or time: decompressed bytes, one top-level field's bytes, and the memory
/// the decoded messages take (estimated as they arrive: a 2-byte empty sample is a 72-byte
/// struct), relative to the input's size, since a few kilobytes of gzip can expand into
/// gigabytes of valid messages. Real profiles compress 2-20 times and decode into a few times
/// their protobuf size, far inside these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of protobuf after decompression.
    pub decompressed: u64,
    /// Bytes of one top-level field (one sample, one string, one location, ...).
    pub field: u64,
    /// Decoded memory per input byte.
    pub memory_ratio: u64,
    /// Decoded memory always allowed, whatever the input's size.
    pub memory_floor: u64,
    /// Decoded memory never exceeded.
    pub memory_max: u64,
}

impl Limits {
    /// The limits [`decode`] applies.
    pub const DEFAULT: Limits = Limits {
        decompressed: 2 << 30,
        field: 64 << 20,
        memory_ratio: 64,
        memory_floor: 256 << 20,
        memory_max: 8 << 30,
    };

    /// The decoded memory allowed for an input of `bytes`.
    fn memory_for(&self, bytes: usize) -> u64 {
        (bytes as u64)
            .saturating_mul(self.memory_ratio)
            .max(self.memory_floor)
            .min(self.memory_max)
    }
}

/// Decode a profile from gzip-compressed or raw protobuf bytes, and validate it.
pub fn decode(bytes: &[u8]) -> Result<Profile> {
    decode_with(bytes, Limits::DEFAULT)
}

/// [`decode`] within `limits`. The message is decoded one top-level field at a time while it
/// is decompressed, so memory follows what the profile holds, not what its bytes claim: a gzip
/// bomb of zeros fails at its first byte, a length that runs past the input fails before
/// anything is allocated for it.
pub fn decode_with(bytes: &[u8], limits: Limits) -> Result<Profile> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    let mut profile = if bytes.starts_with(&GZIP_MAGIC) {
        let gz = flate2::read::MultiGzDecoder::new(bytes);
        let reader = std::io::BufReader::with_capacity(64 << 10, gz);
        decode_stream(reader, limits, limits.memory_for(bytes.len()), true)?
    } else {
        decode_stream(bytes, limits, limits.memory_for(bytes.len()), false)?
    };
    validate(&profile)?;
    densify_ids(&mut profile);
    Ok(profile)
}

/// Decode `input` field by field into a profile; `gzip` says read errors are gzip's.
fn decode_stream(
    mut input: impl Read,
    limits: Limits,
    memory_limit: u64,
    gzip: bool,
) -> Result<Profile> {
    let io_error = |e: std::io::Error| {
        if gzip {
            Error::Gzip(e)
        } else {
            Error::Invalid(format!("cannot read: {e}"))
        }
    };
    let mut profile = Profile::default();
    let mut field = Vec::new();
    let mut total: u64 = 0;
    let mut memory: u64 = 0;
    loop {
        field.clear();
        // The key: field number and wire type.
        let Some(key) = read_varint(&mut input, &mut field, true).map_err(io_error)? else {
            break;
        };
        match key & 7 {
            // varint
            0 => {
                read_varint(&mut input, &mut field, false).map_err(io_error)?;
            }
            // 64-bit, 32-bit
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                read_exact_into(&mut input, &mut field, n).map_err(io_error)?;
            }
            // length-delimited
            2 => {
                let len = read_varint(&mut input, &mut field, false)
                    .map_err(io_error)?
                    .unwrap_or(0);
                if len > limits.field {
                    return Err(Error::TooLarge(format!(
                        "a field of {len} bytes (the limit is {})",
                        limits.field
                    )));
                }
                read_exact_into(&mut input, &mut field, len).map_err(io_error)?;
            }
            w => {
                return Err(Error::Decode(prost::DecodeError::new(format!(
                    "unsupported wire type {w}"
                ))))
            }
        }
        total += field.len() as u64;
        if total > limits.decompressed {
            return Err(Error::TooLarge(format!(
                "more than {} bytes of profile after decompression",
                limits.decompressed
            )));
        }
        // A message struct, and its varints widened to 8 bytes each at most.
        memory += 96 + 8 * field.len() as u64;
        if memory > memory_limit {
            return Err(Error::TooLarge(format!(
                "it would take more than {} MiB of memory for {} bytes of input (a gzip bomb?)",
                memory_limit >> 20,
                total
            )));
        }
        profile.merge(field.as_slice())?;
    }
    Ok(profile)
}

/// Read one varint, appending its bytes to `out`; `None` at a clean end of input when
/// `at_start` (between fields).
fn read_varint(
    input: &mut impl Read,
    out: &mut Vec<u8>,
    at_start: bool,
) -> std::io::Result<Option<u64>> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        if input.read(&mut b)? == 0 {
            if i == 0 && at_start {
                return Ok(None);
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the profile ends inside a field",
            ));
        }
        out.push(b[0]);
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a varint longer than 10 bytes",
    ))
}

/// Append exactly `n` bytes of `input` to `out`, growing it only as bytes arrive.
fn read_exact_into(input: &mut impl Read, out: &mut Vec<u8>, n: u64) -> std::io::Result<()> {
    let got = input.take(n).read_to_end(out)?;
    if (got as u64) < n {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the profile ends inside a field",
        ));
    }
    Ok(())
}

/// Renumber locations, functions and mappings 1, 2, 3, ... in file order when they are not
/// already, so that every lookup by id is direct (`Profile::location_by_id` guesses the
/// position from the id): a file with sparse ids reads in time linear in its size.
fn densify_ids(p: &mut Profile) {
    if let Some(new) = renumber(p.mapping.iter_mut().map(|m| &mut m.id)) {
        for l in p.location.iter_mut().filter(|l| l.mapping_id != 0) {
            l.mapping_id = new[&l.mapping_id];
        }
    }
    if let Some(new) = renumber(p.function.iter_mut().map(|f| &mut f.id)) {
        for line in p.location.iter_mut().flat_map(|l| l.line.iter_mut()) {
            line.function_id = new[&line.function_id];
        }
    }
    if let Some(new) = renumber(p.location.iter_mut().map(|l| &mut l.id)) {
        for id in p.sample.iter_mut().flat_map(|s| s.location_id.iter_mut()) {
            *id = new[id];
        }
    }
}

/// Number `ids` 1, 2, 3, ... in order; the old-to-new map, or `None` when they already were.
fn renumber<'a>(
    ids: impl Iterator<Item = &'a mut u64>,
) -> Option<std::collections::HashMap<u64, u64>> {
    let mut ids: Vec<&mut u64> = ids.collect();
    if ids.iter().enumerate().all(|(i, id)| **id == i as u64 + 1) {
        return None;
    }
    let mut new = std::collections::HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter_mut().enumerate() {
        new.insert(**id, i as u64 + 1);
        **id = i as u64 + 1;
    }
    Some(new)
}

/// Read and decode the profile at `path`.
pub fn read_file(path: &Path) -> Result<Profile> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes)
}

/// Write `profile` to `path` atomically: a temporary file in the same directory, then a rename,
/// so a reader never sees half a profile.
pub fn write_file(path: &Path, profile: &Profile) -> Result<()> {
    write_file_packed(path, profile, Packing::Default)
}

/// [`write_file`], compressed as `packing` says.
pub fn write_file_packed(path: &Path, profile: &Profile, packing: Packing) -> Result<()> {
    write_atomically(path, &encode_packed(profile, packing)).map_err(|e| Error::io(path, e))
}

/// Write `bytes` to `path` through a temporary file in the same directory renamed over it, so
/// readers never see half a file and a symlink at `path` is replaced, never written through.
/// Every file rprof writes (profiles, flame graphs) is written this way.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Check the invariants every pprof reader relies on.
pub fn validate(p: &Profile) -> Result<()> {
    let invalid = |msg: String| Err(Error::Invalid(msg));
    if p.string_table.first().map(String::as_str) != Some("") {
        return invalid("string table must start with the empty string".into());
    }
    if p.sample_type.is_empty() {
        return invalid("no sample types".into());
    }
    let nstr = p.string_table.len() as i64;
    let str_ok = |i: i64| (0..nstr).contains(&i);
    for vt in p.sample_type.iter().chain(p.period_type.iter()) {
        if !str_ok(vt.r#type) || !str_ok(vt.unit) {
            return invalid("value type names a string out of range".into());
        }
    }
    for i in [
        p.default_sample_type,
        p.drop_frames,
        p.keep_frames,
        p.doc_url,
    ]
    .into_iter()
    .chain(p.comment.iter().copied())
    {
        if !str_ok(i) {
            return invalid(format!("string index {i} out of range"));
        }
    }
    let mut mappings = HashSet::new();
    for m in &p.mapping {
        if m.id == 0 || !mappings.insert(m.id) {
            return invalid(format!("mapping id {} is zero or repeated", m.id));
        }
        if !str_ok(m.filename) || !str_ok(m.build_id) {
            return invalid(format!("mapping {} names a string out of range", m.id));
        }
    }
    let mut functions = HashSet::new();
    for f in &p.function {
        if f.id == 0 || !functions.insert(f.id) {
            return invalid(format!("function id {} is zero or repeated", f.id));
        }
        if !str_ok(f.name) || !str_ok(f.system_name) || !str_ok(f.filename) {
            return invalid(format!("function {} names a string out of range", f.id));
        }
    }
    let max_location = p.location.iter().map(|l| l.id).max().unwrap_or(0);
    let mut locations = IdSet::new(max_location, p.location.len());
    for l in &p.location {
        if l.id == 0 || !locations.insert(l.id) {
            return invalid(format!("location id {} is zero or repeated", l.id));
        }
        if l.mapping_id != 0 && !mappings.contains(&l.mapping_id) {
            return invalid(format!(
                "location {} names missing mapping {}",
                l.id, l.mapping_id
            ));
        }
        if let Some(line) = l
            .line
            .iter()
            .find(|ln| !functions.contains(&ln.function_id))
        {
            return invalid(format!(
                "location {} names missing function {}",
                l.id, line.function_id
            ));
        }
    }
    for s in &p.sample {
        if s.value.len() != p.sample_type.len() {
            return invalid(format!(
                "a sample has {} values but the profile has {} sample types",
                s.value.len(),
                p.sample_type.len()
            ));
        }
        if let Some(id) = s.location_id.iter().find(|id| !locations.contains(id)) {
            return invalid(format!("a sample names missing location {id}"));
        }
    }
    Ok(())
}

/// A set of ids, checked once per stack frame while validating (tens of millions of times for a
/// large profile): a bit per id when the ids are dense, as writers number them, a hash set
/// otherwise.
enum IdSet {
    Dense(Vec<bool>),
    Sparse(HashSet<u64>),
}

impl IdSet {
    /// Ids up to this many per stored id are kept as flags.
    const DENSE_FACTOR: u64 = 16;

    /// A set for `count` ids of which `max` is the largest.
    fn new(max: u64, count: usize) -> IdSet {
        if max <= Self::DENSE_FACTOR * count as u64 + 1024 {
            IdSet::Dense(vec![false; max as usize + 1])
        } else {
            IdSet::Sparse(HashSet::new())
        }
    }

    /// Add `id`; false when it was there.
    fn insert(&mut self, id: u64) -> bool {
        match self {
            IdSet::Dense(bits) => {
                let slot = &mut bits[id as usize];
                !std::mem::replace(slot, true)
            }
            IdSet::Sparse(set) => set.insert(id),
        }
    }

    fn contains(&self, id: &u64) -> bool {
        match self {
            IdSet::Dense(bits) => bits.get(*id as usize).copied().unwrap_or(false),
            IdSet::Sparse(set) => set.contains(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProfileBuilder;

    fn sample_profile() -> Profile {
        let mut b = ProfileBuilder::new(
            &[("samples", "count"), ("cpu", "nanoseconds")],
            ("cpu", "nanoseconds"),
            10_000_000,
        );
        let f = b.function("hot", "_ZN3hot17h0123456789abcdefE", "src/lib.rs", 3);
        let l = b.location(0, 0x1234, &[(f, 7)]);
        b.add_sample(&[l], &[2, 20_000_000]);
        b.build()
    }

    #[test]
    fn round_trip_is_lossless() {
        let p = sample_profile();
        let bytes = encode(&p);
        assert_eq!(&bytes[..2], &GZIP_MAGIC);
        assert_eq!(decode(&bytes).unwrap(), p);
        // Raw protobuf is accepted too.
        assert_eq!(decode(&p.encode_to_vec()).unwrap(), p);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(decode(b""), Err(Error::Empty)));
        assert!(decode(b"this is a text file, not a profile\n").is_err());
        let bytes = encode(&sample_profile());
        assert!(matches!(
            decode(&bytes[..bytes.len() / 2]),
            Err(Error::Gzip(_))
        ));
        // A valid protobuf of another shape: a ValueType message.
        let other = crate::proto::ValueType { r#type: 3, unit: 4 }.encode_to_vec();
        assert!(decode(&other).is_err());
    }

    #[test]
    fn location_ids_dense_or_sparse_are_checked() {
        for shift in [0, 40] {
            let mut p = sample_profile();
            for l in &mut p.location {
                l.id += 1 << shift;
            }
            for s in &mut p.sample {
                for id in &mut s.location_id {
                    *id += 1 << shift;
                }
            }
            validate(&p).unwrap();
            p.sample[0].location_id.push(7 << 20);
            let e = validate(&p).unwrap_err().to_string();
            assert!(e.contains("missing location"), "{e}");
            let mut p = sample_profile();
            let again = p.location[0].clone();
            p.location.push(again);
            let e = validate(&p).unwrap_err().to_string();
            assert!(e.contains("repeated"), "{e}");
        }
    }

    /// `member` gzip-compressed once and repeated `times` as one multi-member stream.
    fn gzip_members(member: &[u8], times: usize) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(member).unwrap();
        gz.finish().unwrap().repeat(times)
    }

    #[test]
    fn a_gzip_bomb_of_zeros_fails_at_its_first_byte() {
        // 1 MiB of zeros, 512 times: half a gigabyte from a few hundred kilobytes.
        let bomb = gzip_members(&vec![0u8; 1 << 20], 512);
        assert!(bomb.len() < 1 << 20);
        let t = std::time::Instant::now();
        let err = decode(&bomb).unwrap_err().to_string();
        assert!(err.contains("not a pprof profile"), "{err}");
        // It stops at the first field, not after inflating everything (well under a second).
        assert!(t.elapsed().as_secs_f64() < 5.0);
    }

    #[test]
    fn a_gzip_bomb_of_valid_messages_is_refused_by_its_memory() {
        // Empty samples (2 bytes each) decode into 72-byte structs.
        let member: Vec<u8> = [0x12u8, 0x00].repeat(1 << 19);
        let bomb = gzip_members(&member, 64);
        let limits = Limits {
            memory_floor: 8 << 20,
            ..Limits::DEFAULT
        };
        let err = decode_with(&bomb, limits).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
        assert!(err.to_string().contains("gzip bomb"), "{err}");
    }

    #[test]
    fn lengths_past_the_limits_or_the_input_are_refused_before_allocating() {
        // A sample field claiming 2^40 bytes.
        let mut huge = vec![0x12u8];
        let mut n: u64 = 1 << 40;
        while n >= 0x80 {
            huge.push((n as u8) | 0x80);
            n >>= 7;
        }
        huge.push(n as u8);
        let err = decode(&huge).unwrap_err();
        assert!(matches!(err, Error::TooLarge(_)), "{err}");
        // One that claims 1000 bytes and has 3.
        let err = decode(&[0x12, 0xe8, 0x07, 1, 2, 3])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ends inside a field"), "{err}");
        // An 11-byte varint.
        let err = decode(&[
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("varint"), "{err}");
    }

    #[test]
    fn sparse_and_repeated_ids() {
        // Ids far apart (allowed by the format) are checked as dense ones are.
        let mut p = sample_profile();
        p.location[0].id = 1 << 40;
        p.sample[0].location_id = vec![1 << 40];
        p.function[0].id = 9_999_999;
        p.location[0].line[0].function_id = 9_999_999;
        // ... and renumbered 1, 2, ... on the way in, so lookups by id are direct.
        assert_eq!(decode(&encode(&p)).unwrap(), sample_profile());
        // A sample naming a missing location, dense or sparse.
        for missing in [2, 1 << 41, 0] {
            let mut q = p.clone();
            q.sample[0].location_id.push(missing);
            let err = decode(&encode(&q)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("missing location {missing}")),
                "{err}"
            );
        }
        // A repeated id, dense or sparse.
        for id in [1, 1 << 40] {
            let mut q = p.clone();
            q.location[0].id = id;
            q.sample[0].location_id = vec![id];
            q.location.push(q.location[0].clone());
            let err = decode(&encode(&q)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("location id {id} is zero or repeated")),
                "{err}"
            );
        }
    }
}

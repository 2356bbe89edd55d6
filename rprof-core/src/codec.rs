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

/// Decode a profile from gzip-compressed or raw protobuf bytes, and validate it.
pub fn decode(bytes: &[u8]) -> Result<Profile> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    let profile = if bytes.starts_with(&GZIP_MAGIC) {
        let mut raw = Vec::with_capacity(bytes.len() * 4);
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut raw)
            .map_err(Error::Gzip)?;
        Profile::decode(raw.as_slice())?
    } else {
        Profile::decode(bytes)?
    };
    validate(&profile)?;
    Ok(profile)
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

    #[test]
    fn sparse_and_repeated_ids() {
        // Ids far apart (allowed by the format) are checked as dense ones are.
        let mut p = sample_profile();
        p.location[0].id = 1 << 40;
        p.sample[0].location_id = vec![1 << 40];
        p.function[0].id = 9_999_999;
        p.location[0].line[0].function_id = 9_999_999;
        assert_eq!(decode(&encode(&p)).unwrap(), p);
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

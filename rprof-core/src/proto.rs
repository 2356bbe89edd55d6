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
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// Location ids, leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    /// One value per entry of [`Profile::sample_type`].
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    /// Extra key/value context.
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
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

//! Building a profile: interning strings, functions and locations, and folding equal stacks.

use std::collections::HashMap;

use crate::proto::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

/// A location's identity: mapping id, address and `(function id, line)` frames.
type LocationKey = (u64, u64, Vec<(u64, i64)>);

/// Builds a [`Profile`] with deduplicated tables: each string, function, location and stack once.
#[derive(Debug)]
pub struct ProfileBuilder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<(i64, i64, i64, i64), u64>,
    locations: HashMap<LocationKey, u64>,
    samples: HashMap<Vec<u64>, usize>,
    /// Mappings by what identifies the file's image whatever its load address: (filename,
    /// build id, file offset, size) as interned strings and numbers → mapping id.
    images: HashMap<(i64, i64, u64, u64), u64>,
}

/// What describes a mapping before it is interned: see [`Mapping`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingInfo {
    /// First address.
    pub memory_start: u64,
    /// One past the last address.
    pub memory_limit: u64,
    /// File offset of `memory_start`.
    pub file_offset: u64,
    /// Path of the binary.
    pub filename: String,
    /// Hex GNU build id, or empty.
    pub build_id: String,
    /// Whether the locations in it are symbolized (sets all four `has_*` flags).
    pub symbolized: bool,
}

impl ProfileBuilder {
    /// A builder for a profile with these `(type, unit)` sample types and period.
    pub fn new(sample_types: &[(&str, &str)], period_type: (&str, &str), period: i64) -> Self {
        let mut b = ProfileBuilder {
            profile: Profile::default(),
            strings: HashMap::new(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            samples: HashMap::new(),
            images: HashMap::new(),
        };
        b.string("");
        b.profile.sample_type = sample_types
            .iter()
            .map(|&(t, u)| b.value_type(t, u))
            .collect();
        b.profile.period_type = Some(b.value_type(period_type.0, period_type.1));
        b.profile.period = period;
        b
    }

    /// A builder carrying `profile`'s sample types, period, time, comments and default sample
    /// type, and nothing else: for rebuilding a profile (symbolizing, merging, trimming).
    pub fn like(profile: &Profile) -> ProfileBuilder {
        let types: Vec<(String, String)> = profile
            .sample_type
            .iter()
            .map(|vt| profile.value_type_name(vt))
            .collect();
        let type_refs: Vec<(&str, &str)> = types
            .iter()
            .map(|(t, u)| (t.as_str(), u.as_str()))
            .collect();
        let period_type = profile
            .period_type
            .map(|vt| profile.value_type_name(&vt))
            .unwrap_or_default();
        let mut b =
            ProfileBuilder::new(&type_refs, (&period_type.0, &period_type.1), profile.period);
        if profile.default_sample_type != 0 {
            b.default_sample_type(profile.str(profile.default_sample_type));
        }
        b.time(profile.time_nanos, profile.duration_nanos);
        for &c in &profile.comment {
            b.comment(profile.str(c));
        }
        b
    }

    /// Drop the comments [`ProfileBuilder::like`] carried over (a merge adds them itself).
    pub fn without_comments(mut self) -> ProfileBuilder {
        self.profile.comment.clear();
        self
    }

    fn value_type(&mut self, t: &str, u: &str) -> ValueType {
        ValueType {
            r#type: self.string(t),
            unit: self.string(u),
        }
    }

    /// Intern a string, returning its index.
    pub fn string(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_owned());
        self.strings.insert(s.to_owned(), i);
        i
    }

    /// Add a mapping (not deduplicated: each binary keeps its own), returning its id.
    pub fn mapping(&mut self, m: &MappingInfo) -> u64 {
        if let Some(existing) = self.profile.mapping.iter().find(|x| {
            x.memory_start == m.memory_start
                && x.memory_limit == m.memory_limit
                && x.file_offset == m.file_offset
                && self.profile.str(x.filename) == m.filename
                && self.profile.str(x.build_id) == m.build_id
        }) {
            return existing.id;
        }
        let id = self.profile.mapping.len() as u64 + 1;
        let filename = self.string(&m.filename);
        let build_id = self.string(&m.build_id);
        self.profile.mapping.push(Mapping {
            id,
            memory_start: m.memory_start,
            memory_limit: m.memory_limit,
            file_offset: m.file_offset,
            filename,
            build_id,
            has_functions: m.symbolized,
            has_filenames: m.symbolized,
            has_line_numbers: m.symbolized,
            has_inline_frames: m.symbolized,
        });
        id
    }

    /// Add a mapping, or find one of the same image (file, build id, offset and size) loaded at
    /// another address — the same binary in another process, moved by ASLR — returning its id
    /// and what to add to the addresses of `m` to make them addresses in it. Merging the
    /// processes of one binary then folds their locations instead of keeping one copy per
    /// process.
    pub fn mapping_relocated(&mut self, m: &MappingInfo) -> (u64, u64) {
        let filename = self.string(&m.filename);
        let build_id = self.string(&m.build_id);
        let size = m.memory_limit.wrapping_sub(m.memory_start);
        let key = (filename, build_id, m.file_offset, size);
        if let Some(&id) = self.images.get(&key) {
            let start = self.profile.mapping[id as usize - 1].memory_start;
            return (id, start.wrapping_sub(m.memory_start));
        }
        let id = self.mapping(m);
        self.images.insert(key, id);
        let start = self.profile.mapping[id as usize - 1].memory_start;
        (id, start.wrapping_sub(m.memory_start))
    }

    /// Intern a function, returning its id.
    pub fn function(
        &mut self,
        name: &str,
        system_name: &str,
        filename: &str,
        start_line: i64,
    ) -> u64 {
        let key = (
            self.string(name),
            self.string(system_name),
            self.string(filename),
            start_line,
        );
        let next = self.profile.function.len() as u64 + 1;
        let id = *self.functions.entry(key).or_insert(next);
        if id == next {
            self.profile.function.push(Function {
                id,
                name: key.0,
                system_name: key.1,
                filename: key.2,
                start_line,
            });
        }
        id
    }

    /// Intern a location: an address in a mapping (0 for none) with its `(function id, line)`
    /// frames, innermost first. Returns its id.
    pub fn location(&mut self, mapping_id: u64, address: u64, lines: &[(u64, i64)]) -> u64 {
        let key = (mapping_id, address, lines.to_vec());
        let next = self.profile.location.len() as u64 + 1;
        let id = *self.locations.entry(key).or_insert(next);
        if id == next {
            self.profile.location.push(Location {
                id,
                mapping_id,
                address,
                line: lines
                    .iter()
                    .map(|&(function_id, line)| Line {
                        function_id,
                        line,
                        column: 0,
                    })
                    .collect(),
                is_folded: false,
            });
        }
        id
    }

    /// Add `values` for the stack `location_ids` (leaf first); equal stacks are summed.
    pub fn add_sample(&mut self, location_ids: &[u64], values: &[i64]) {
        debug_assert_eq!(values.len(), self.profile.sample_type.len());
        if let Some(&i) = self.samples.get(location_ids) {
            for (acc, v) in self.profile.sample[i].value.iter_mut().zip(values) {
                *acc += v;
            }
            return;
        }
        self.samples
            .insert(location_ids.to_vec(), self.profile.sample.len());
        self.profile.sample.push(Sample {
            location_id: location_ids.to_vec(),
            value: values.to_vec(),
            label: Vec::new(),
        });
    }

    /// Add a sample carrying labels; such samples are never folded together.
    pub fn add_labeled_sample(&mut self, location_ids: &[u64], values: &[i64], labels: Vec<Label>) {
        if labels.is_empty() {
            return self.add_sample(location_ids, values);
        }
        self.profile.sample.push(Sample {
            location_id: location_ids.to_vec(),
            value: values.to_vec(),
            label: labels,
        });
    }

    /// Set the sample type shown by default (must be one of the sample types' names).
    pub fn default_sample_type(&mut self, name: &str) {
        self.profile.default_sample_type = self.string(name);
    }

    /// Set when collection started (ns since the epoch) and how long it lasted.
    pub fn time(&mut self, time_nanos: i64, duration_nanos: i64) {
        self.profile.time_nanos = time_nanos;
        self.profile.duration_nanos = duration_nanos;
    }

    /// Add a comment line.
    pub fn comment(&mut self, text: &str) {
        let i = self.string(text);
        if !self.profile.comment.contains(&i) {
            self.profile.comment.push(i);
        }
    }

    /// The period between samples.
    pub fn set_period(&mut self, period: i64) {
        self.profile.period = period;
    }

    /// Number of samples so far.
    pub fn sample_type_count(&self) -> usize {
        self.profile.sample_type.len()
    }

    /// How many samples have been added.
    pub fn sample_count(&self) -> usize {
        self.profile.sample.len()
    }

    /// Finish the profile.
    pub fn build(self) -> Profile {
        self.profile
    }
}

//! Convenience accessors on the raw [`Profile`] message.

use crate::proto::{Function, Location, Profile, ValueType};
use crate::{Error, Result};

impl Profile {
    /// The string at index `i`, or `""` when out of range.
    pub fn str(&self, i: i64) -> &str {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.string_table.get(i))
            .map_or("", String::as_str)
    }

    /// The index of `s` in the string table, added when missing (a linear search: for the
    /// few strings an edit adds, not for building profiles).
    pub fn intern(&mut self, s: &str) -> i64 {
        match self.string_table.iter().position(|t| t == s) {
            Some(i) => i as i64,
            None => {
                self.string_table.push(s.to_owned());
                (self.string_table.len() - 1) as i64
            }
        }
    }

    /// `type/unit` of a value type, e.g. `cpu/nanoseconds`.
    pub fn value_type_name(&self, vt: &ValueType) -> (String, String) {
        (self.str(vt.r#type).to_owned(), self.str(vt.unit).to_owned())
    }

    /// Index of the sample type named `name`, or an error listing the available ones.
    pub fn sample_index(&self, name: &str) -> Result<usize> {
        if let Some(i) = self
            .sample_type
            .iter()
            .position(|vt| self.str(vt.r#type) == name)
        {
            return Ok(i);
        }
        // Like pprof, accept a plain number too.
        if let Ok(i) = name.parse::<usize>() {
            if i < self.sample_type.len() {
                return Ok(i);
            }
        }
        Err(Error::NoSuchSampleType {
            name: name.to_owned(),
            available: self
                .sample_type
                .iter()
                .map(|vt| self.str(vt.r#type))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The sample type shown when none is asked for: `default_sample_type`, else the last one
    /// (pprof's rule).
    pub fn default_sample_index(&self) -> usize {
        if self.default_sample_type != 0 {
            let name = self.str(self.default_sample_type);
            if let Some(i) = self
                .sample_type
                .iter()
                .position(|vt| self.str(vt.r#type) == name)
            {
                return i;
            }
        }
        self.sample_type.len().saturating_sub(1)
    }

    /// Location by id (ids are usually dense, so try the direct slot first).
    pub fn location_by_id(&self, id: u64) -> Option<&Location> {
        let guess = (id as usize).wrapping_sub(1);
        match self.location.get(guess) {
            Some(l) if l.id == id => Some(l),
            _ => self.location.iter().find(|l| l.id == id),
        }
    }

    /// Function by id.
    pub fn function_by_id(&self, id: u64) -> Option<&Function> {
        let guess = (id as usize).wrapping_sub(1);
        match self.function.get(guess) {
            Some(f) if f.id == id => Some(f),
            _ => self.function.iter().find(|f| f.id == id),
        }
    }

    /// Sum of one value over all samples.
    pub fn total(&self, index: usize) -> i64 {
        self.sample
            .iter()
            .map(|s| s.value.get(index).copied().unwrap_or(0))
            .sum()
    }
}

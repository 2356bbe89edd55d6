//! A [`gimli::Reader`] over bytes shared with the symbolizer's cache: a range of a memory-mapped
//! binary, or a decompressed section.
//!
//! gimli's own owning readers want an `Arc<[u8]>` (a copy of every debug section) or a type that
//! promises a stable address through an `unsafe impl`; a reader that keeps an `Arc` of the map and
//! a range into it needs neither, so the DWARF of a binary is read lazily straight from the page
//! cache and the parsed context can live in the cache next to the map it points into.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use gimli::{Error, ReaderOffsetId, Result, RunTimeEndian};
use memmap2::Mmap;

/// Where the bytes of a section live.
#[derive(Clone)]
pub(super) enum Backing {
    /// The memory-mapped file.
    Map(Arc<Mmap>),
    /// A decompressed section.
    Owned(Arc<[u8]>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Map(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// The bytes `start..end` of a [`Backing`]; the invariant `start <= end <= backing length` holds
/// from construction on, every method below keeps it.
#[derive(Clone)]
pub(super) struct SectionReader {
    backing: Backing,
    start: usize,
    end: usize,
    endian: RunTimeEndian,
}

impl fmt::Debug for SectionReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SectionReader({}..{})", self.start, self.end)
    }
}

impl SectionReader {
    /// A reader of `backing[start..start + len]`, or `None` when that range is out of bounds.
    pub(super) fn new(
        backing: Backing,
        start: usize,
        len: usize,
        endian: RunTimeEndian,
    ) -> Option<Self> {
        let end = start.checked_add(len)?;
        if end > backing.bytes().len() {
            return None;
        }
        Some(SectionReader {
            backing,
            start,
            end,
            endian,
        })
    }

    /// An empty reader, for a section the file does not have.
    pub(super) fn empty_section(endian: RunTimeEndian) -> Self {
        SectionReader {
            backing: Backing::Owned(Arc::from(&[][..])),
            start: 0,
            end: 0,
            endian,
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        self.backing
            .bytes()
            .get(self.start..self.end)
            .unwrap_or_default()
    }

    fn eof(&self) -> Error {
        Error::UnexpectedEof(gimli::Reader::offset_id(self))
    }
}

impl gimli::Reader for SectionReader {
    type Endian = RunTimeEndian;
    type Offset = usize;

    #[inline]
    fn endian(&self) -> RunTimeEndian {
        self.endian
    }

    #[inline]
    fn len(&self) -> usize {
        self.end - self.start
    }

    #[inline]
    fn empty(&mut self) {
        self.end = self.start;
    }

    #[inline]
    fn truncate(&mut self, len: usize) -> Result<()> {
        if self.len() < len {
            return Err(self.eof());
        }
        self.end = self.start + len;
        Ok(())
    }

    #[inline]
    fn offset_from(&self, base: &Self) -> usize {
        self.start.saturating_sub(base.start)
    }

    #[inline]
    fn offset_id(&self) -> ReaderOffsetId {
        ReaderOffsetId(self.bytes().as_ptr() as u64)
    }

    #[inline]
    fn lookup_offset_id(&self, id: ReaderOffsetId) -> Option<usize> {
        let base = self.bytes().as_ptr() as u64;
        if id.0 >= base && id.0 <= base + self.len() as u64 {
            Some((id.0 - base) as usize)
        } else {
            None
        }
    }

    #[inline]
    fn find(&self, byte: u8) -> Result<usize> {
        self.bytes()
            .iter()
            .position(|&b| b == byte)
            .ok_or_else(|| self.eof())
    }

    #[inline]
    fn skip(&mut self, len: usize) -> Result<()> {
        if self.len() < len {
            return Err(self.eof());
        }
        self.start += len;
        Ok(())
    }

    #[inline]
    fn split(&mut self, len: usize) -> Result<Self> {
        if self.len() < len {
            return Err(self.eof());
        }
        let mut head = self.clone();
        head.end = self.start + len;
        self.start += len;
        Ok(head)
    }

    #[inline]
    fn to_slice(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(self.bytes()))
    }

    #[inline]
    fn to_string(&self) -> Result<Cow<'_, str>> {
        std::str::from_utf8(self.bytes())
            .map(Cow::Borrowed)
            .map_err(|_| Error::BadUtf8)
    }

    #[inline]
    fn to_string_lossy(&self) -> Result<Cow<'_, str>> {
        Ok(String::from_utf8_lossy(self.bytes()))
    }

    #[inline]
    fn read_slice(&mut self, buf: &mut [u8]) -> Result<()> {
        let Some(src) = self.bytes().get(..buf.len()) else {
            return Err(self.eof());
        };
        buf.copy_from_slice(src);
        self.start += buf.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gimli::Reader;

    fn reader(bytes: &[u8]) -> SectionReader {
        SectionReader::new(
            Backing::Owned(Arc::from(bytes)),
            0,
            bytes.len(),
            RunTimeEndian::Little,
        )
        .unwrap()
    }

    #[test]
    fn reads_splits_and_reports_eof() {
        let mut r = reader(&[1, 2, 0, 0x34, 0x12, 9]);
        let base = r.clone();
        assert_eq!(r.read_u8().unwrap(), 1);
        let mut head = r.split(2).unwrap();
        assert_eq!(head.len(), 2);
        assert_eq!(head.find(0).unwrap(), 1);
        assert_eq!(r.offset_from(&base), 3);
        assert_eq!(r.read_u16().unwrap(), 0x1234);
        assert!(r.read_u16().is_err());
        assert_eq!(head.read_u8().unwrap(), 2);
        head.empty();
        assert!(head.is_empty());
        assert!(r.truncate(5).is_err());
    }

    #[test]
    fn refuses_out_of_range_construction() {
        let b = Backing::Owned(Arc::from(&[0u8; 4][..]));
        assert!(SectionReader::new(b.clone(), 2, 3, RunTimeEndian::Little).is_none());
        assert!(SectionReader::new(b, usize::MAX, 2, RunTimeEndian::Little).is_none());
    }
}

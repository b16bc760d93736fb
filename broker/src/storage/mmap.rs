//! Read-only memory maps of immutable files: the only place in the crate with `unsafe`.
//!
//! Only files that no one modifies while they are mapped are mapped here: sealed segments
//! and their index files. The broker never writes, truncates or repairs a file it has mapped
//! (repair runs at open, before any map exists); retention unlinks files, which leaves
//! existing maps valid. A process outside the broker truncating a mapped file could make
//! a read fault (SIGBUS); the data directory lock and the docs forbid that.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;
use std::path::Path;

use memmap2::Mmap;

/// A read-only map of a whole file.
#[derive(Debug)]
pub struct MappedFile {
    /// The map; empty files are represented without one (mapping zero bytes fails).
    map: Option<Mmap>,
}

impl MappedFile {
    /// Maps the file at `path` read-only.
    pub fn open(path: &Path) -> io::Result<MappedFile> {
        let file = File::open(path)?;
        if file.metadata()?.len() == 0 {
            return Ok(MappedFile { map: None });
        }
        // SAFETY: the mapped file is immutable for as long as the map lives: the broker only
        // maps sealed segments and index files, which it never writes, truncates or repairs
        // while they are mapped (see the module docs); unlinking keeps the map valid.
        let map = unsafe { Mmap::map(&file)? };
        Ok(MappedFile { map: Some(map) })
    }
}

impl Deref for MappedFile {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

//! Direct I/O for the delivery log: its segments are written and read without the page cache.
//!
//! Through the page cache, every mebibyte the log writes (zeros first, when a segment is made,
//! then deliveries over them) lands in pages the kernel has to find and fill first, and on this
//! kind of machine (a VM) a page never used before is dear: zero-filling a segment through the
//! cache took 3 ms of CPU per MiB, against 0.2 ms written directly from one buffer. The log never
//! reads back what it writes soon enough for the cache to help, so it goes around it where the
//! filesystem allows (`O_DIRECT`; a filesystem that refuses it, such as tmpfs before Linux 6.6,
//! gets the log through the cache).
//!
//! Direct I/O wants the memory, the file offset and the length aligned to the device's block;
//! [`AlignedBuffer`] gives memory aligned to [`ALIGN`], and the log only writes and reads whole
//! 4 KiB blocks at block offsets.

use std::{
    fs::{File, OpenOptions},
    io,
    ops::{Deref, DerefMut},
    path::Path,
};

/// What direct I/O is aligned to: 4 KiB covers every block size in common use.
pub const ALIGN: usize = 4096;

/// Opens `path` for reading and writing (creating it when missing), with direct I/O when the
/// filesystem supports it. Says which it got.
pub fn open(path: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        match options.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(file) => return Ok((file, true)),
            // The filesystem does not do direct I/O: go through the page cache.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((options.open(path)?, false))
}

/// A growable byte buffer whose contents start at an [`ALIGN`]-aligned address, so that it can
/// be written to or read from a file opened for direct I/O. (A `Vec<u8>` with room for the
/// alignment, and the contents starting where it is aligned.)
#[derive(Default)]
pub struct AlignedBuffer {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        let mut buffer = Self::default();
        buffer.resize(len);
        buffer
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Grows with zeros or shrinks to `len` bytes.
    pub fn resize(&mut self, len: usize) {
        self.reserve(len);
        if len > self.len {
            self.raw[self.start + self.len..self.start + len].fill(0);
        }
        self.len = len;
    }

    /// Fills the buffer with `len` bytes of `file` from `offset`, without zeroing them first.
    pub fn read_exact_at(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        self.reserve(len);
        self.len = len;
        std::os::unix::fs::FileExt::read_exact_at(file, self, offset)
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let len = self.len + bytes.len();
        self.reserve(len);
        self.raw[self.start + self.len..self.start + len].copy_from_slice(bytes);
        self.len = len;
    }

    /// Makes room for `len` bytes in all, keeping the contents.
    fn reserve(&mut self, len: usize) {
        if self.start + len <= self.raw.len() {
            return;
        }
        let mut raw = vec![0; len.max(2 * self.len) + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        raw[start..start + self.len].copy_from_slice(&self.raw[self.start..self.start + self.len]);
        self.raw = raw;
        self.start = start;
    }
}

impl Deref for AlignedBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_stay_aligned_and_whole_as_the_buffer_grows() {
        let mut buffer = AlignedBuffer::default();
        for i in 0..10_000u32 {
            buffer.extend_from_slice(&i.to_le_bytes());
            assert_eq!(buffer.as_ptr() as usize % ALIGN, 0);
        }
        assert_eq!(buffer.len(), 40_000);
        assert!(
            buffer
                .chunks(4)
                .enumerate()
                .all(|(i, b)| b == (i as u32).to_le_bytes())
        );
        // Shrinking keeps what is left, growing again adds zeros (not what was there).
        buffer.resize(5);
        buffer.resize(8);
        assert_eq!(&buffer[4..], [1, 0, 0, 0]);
        buffer.clear();
        assert!(buffer.is_empty());
    }

    #[test]
    fn a_file_opened_for_direct_io_takes_aligned_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (file, direct) = open(&dir.path().join("f")).unwrap();
        // What the kernel says about the open file agrees with what `open` said it got.
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let info =
                std::fs::read_to_string(format!("/proc/self/fdinfo/{}", file.as_raw_fd())).unwrap();
            let flags = info
                .lines()
                .find_map(|line| line.strip_prefix("flags:"))
                .map(|octal| i32::from_str_radix(octal.trim(), 8).unwrap())
                .unwrap();
            assert_eq!(flags & libc::O_DIRECT != 0, direct, "{info}");
        }
        let mut written = AlignedBuffer::zeroed(2 * ALIGN);
        written[100] = 7;
        std::os::unix::fs::FileExt::write_all_at(&file, &written, ALIGN as u64).unwrap();
        let mut read = AlignedBuffer::default();
        read.read_exact_at(&file, ALIGN as u64, 2 * ALIGN).unwrap();
        assert_eq!((read.len(), read[100]), (2 * ALIGN, 7));
        assert_eq!(file.metadata().unwrap().len(), 3 * ALIGN as u64);
    }
}

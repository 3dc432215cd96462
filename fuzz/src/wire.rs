//! The byte layout of the structured inputs.
//!
//! Structured inputs implement [`arbitrary::Arbitrary`] by reading fixed-width fields off the
//! [`Unstructured`] with [`Unstructured::bytes`], never through `arbitrary`'s own integer and
//! collection encodings. That keeps the layout stable across `arbitrary` versions and, more to
//! the point, writable: the seed tool (`src/bin/seeds.rs`) encodes real fixture streams into
//! exactly the bytes the targets read back, so fuzzing starts from real encoder output.
//!
//! Integers are little-endian. A record cut short by the end of the input ends the sequence
//! (the fuzzer's mutations often cut one); it is not an error.

use arbitrary::{Result, Unstructured};

/// Reads one byte.
pub fn u8(u: &mut Unstructured<'_>) -> Result<u8> {
    Ok(u.bytes(1)?[0])
}

/// Reads a little-endian `u16`.
pub fn u16(u: &mut Unstructured<'_>) -> Result<u16> {
    let b = u.bytes(2)?;
    Ok(u16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian `i16`.
pub fn i16(u: &mut Unstructured<'_>) -> Result<i16> {
    let b = u.bytes(2)?;
    Ok(i16::from_le_bytes([b[0], b[1]]))
}

/// Reads a little-endian `u32`.
pub fn u32(u: &mut Unstructured<'_>) -> Result<u32> {
    let b = u.bytes(4)?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian `i32`.
pub fn i32(u: &mut Unstructured<'_>) -> Result<i32> {
    let b = u.bytes(4)?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads `len` bytes, or fewer when the input ends first.
pub fn bytes_upto(u: &mut Unstructured<'_>, len: usize) -> Result<Vec<u8>> {
    let n = len.min(u.len());
    Ok(u.bytes(n)?.to_vec())
}

/// Reads a sequence of `T` until the input ends; a last record cut short is dropped.
pub fn until_end<'a, T>(
    u: &mut Unstructured<'a>,
    mut one: impl FnMut(&mut Unstructured<'a>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while !u.is_empty() {
        match one(u) {
            Ok(t) => out.push(t),
            Err(arbitrary::Error::NotEnoughData) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// The writing side, for the seed tool.
#[derive(Debug, Default, Clone)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    /// Appends a little-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `i16`.
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian `i32`.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
}

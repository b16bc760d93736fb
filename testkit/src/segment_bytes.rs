//! Reading a log segment's raw bytes in damage tests (`proto-docs/log-format.md`, section 2):
//! where each record starts, so that a test can aim a flipped byte or a cut at a record.

/// Bytes of a segment's header, before its first record.
const HEADER_BYTES: usize = 32;

/// The offset of every record in a segment's bytes, read by the length field of each frame
/// (a frame is a 4-byte length, a 4-byte checksum and the body).
pub fn record_starts(data: &[u8]) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut pos = HEADER_BYTES;
    while pos + 8 <= data.len() {
        starts.push(pos);
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    starts
}

//! The bytes of a WAL segment: file names, the segment header and record frames.
//!
//! Owns the on-disk format described in `storage/WAL.md` and nothing else: no file
//! handles are kept here. Guarantees: [`FrameReader`] never returns a payload whose
//! checksum, length or LSN fails; it never allocates more than
//! [`RECORD_BYTES_MAX`] for one record, nor more than the bytes that are really left
//! in the file; and it tells a clean end from damage.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};

use crate::log::{Lsn, RECORD_BYTES_MAX};

/// First bytes of every segment: says "this is a dispatch WAL segment".
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"DSPCHWAL";

/// The format this build writes and the only one it reads.
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 1;

/// Size of the segment header: magic 8 | version u32 | flags u32 | first_lsn u64 |
/// reserved u32 | crc32c u32 (over the 28 bytes before it).
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;

/// Size of a frame header: len u32 | crc32c u32 | lsn u64.
pub(crate) const FRAME_HEADER_BYTES: usize = 16;

/// Digits of the first LSN in a segment file name: `u64::MAX` has 20, so names of
/// equal width sort by LSN.
const SEGMENT_NAME_DIGITS: usize = 20;

/// Extension of segment files.
const SEGMENT_NAME_SUFFIX: &str = ".wal";

/// Size of the read buffer of recovery and replay: large enough that reading a
/// segment costs few system calls, small enough to be free.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// `00000000000000000001.wal` for a segment whose first record is LSN 1.
pub(crate) fn segment_file_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:0width$}{SEGMENT_NAME_SUFFIX}", width = SEGMENT_NAME_DIGITS)
}

/// The first LSN a segment file name announces, or `None` if the name is not one of
/// ours (other files in the directory are left alone).
pub(crate) fn parse_segment_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_NAME_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header that starts a segment whose first record will be `first_lsn`.
pub(crate) fn encode_segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
    // 12..16 flags and 24..28 reserved stay zero in version 1.
    header[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// What the first bytes of a segment file turn out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SegmentHeader {
    /// A header of ours, of our version.
    Valid {
        /// LSN of the segment's first record.
        first_lsn: Lsn,
    },
    /// Short, zero-filled, or with our magic but a bad checksum: what a crash while
    /// the segment was being created leaves behind.
    Torn,
    /// Not ours: another program's file. Never truncated.
    Foreign {
        /// What did not match.
        reason: String,
    },
    /// Ours, but a format version this build does not read.
    Unsupported {
        /// The version found.
        version: u32,
    },
}

/// Classifies the first `min(file length, 32)` bytes of a segment file.
pub(crate) fn decode_segment_header(bytes: &[u8]) -> SegmentHeader {
    let magic_bytes = bytes.len().min(SEGMENT_MAGIC.len());
    let magic_matches = bytes[..magic_bytes] == SEGMENT_MAGIC[..magic_bytes];
    let all_zero = bytes.iter().all(|&b| b == 0);
    if !magic_matches && !all_zero {
        return SegmentHeader::Foreign {
            reason: format!(
                "magic is {:?}, expected {:?}",
                String::from_utf8_lossy(&bytes[..magic_bytes]),
                String::from_utf8_lossy(&SEGMENT_MAGIC)
            ),
        };
    }
    if bytes.len() < SEGMENT_HEADER_BYTES || all_zero {
        return SegmentHeader::Torn;
    }
    let stored_crc = u32_at(bytes, 28);
    if crc32c::crc32c(&bytes[..28]) != stored_crc {
        return SegmentHeader::Torn;
    }
    let version = u32_at(bytes, 8);
    let flags = u32_at(bytes, 12);
    let reserved = u32_at(bytes, 24);
    if version != SEGMENT_FORMAT_VERSION {
        return SegmentHeader::Unsupported { version };
    }
    if flags != 0 || reserved != 0 {
        return SegmentHeader::Foreign {
            reason: format!("version {version} header with unknown flags {flags:#x} / {reserved:#x}"),
        };
    }
    match u64_at(bytes, 16) {
        0 => SegmentHeader::Foreign { reason: "first lsn is 0; lsns start at 1".to_owned() },
        first_lsn => SegmentHeader::Valid { first_lsn },
    }
}

/// Appends the frame of one record to `buffer`.
///
/// The checksum covers `len`, `lsn` and the payload (every byte of the frame but
/// itself): with `len` covered, any damage of up to 32 consecutive bits anywhere in
/// the frame is caught for certain, rather than misframing the record and relying on
/// a checksum computed over the wrong bytes to fail by chance.
pub(crate) fn encode_frame(buffer: &mut Vec<u8>, lsn: Lsn, payload: &[u8]) {
    debug_assert!(payload.len() <= RECORD_BYTES_MAX, "checked by check_batch");
    // check_batch bounds the payload to RECORD_BYTES_MAX, which fits in a u32.
    let len = (payload.len() as u32).to_le_bytes();
    let lsn = lsn.to_le_bytes();
    let crc = frame_crc(len, lsn, payload);
    buffer.extend_from_slice(&len);
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.extend_from_slice(&lsn);
    buffer.extend_from_slice(payload);
}

fn frame_crc(len: [u8; 4], lsn: [u8; 8], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&len);
    let crc = crc32c::crc32c_append(crc, &lsn);
    crc32c::crc32c_append(crc, payload)
}

/// Why recovery or a read stopped before the end of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageKind {
    /// The segment header is short, zero-filled or fails its checksum.
    TornHeader,
    /// Fewer bytes are left than a frame header needs.
    ShortFrameHeader {
        /// Bytes left in the file.
        bytes_left: u64,
    },
    /// The frame's `len` is over [`RECORD_BYTES_MAX`]: corruption, not a record.
    LenTooLarge {
        /// The `len` found.
        len: u64,
    },
    /// The frame's payload runs past the end of the file.
    ShortPayload {
        /// The `len` found.
        len: u64,
        /// Payload bytes really left in the file.
        bytes_left: u64,
    },
    /// The frame's checksum does not match its bytes.
    BadChecksum,
    /// A well-formed frame carries the wrong LSN.
    LsnOutOfSequence {
        /// The LSN that should come next.
        expected: Lsn,
        /// The LSN found.
        found: Lsn,
    },
    /// A segment's first LSN does not continue the previous segment.
    SegmentGap {
        /// The LSN the previous segment ends before.
        expected: Lsn,
        /// The first LSN the segment announces.
        found: Lsn,
    },
}

impl fmt::Display for DamageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DamageKind::TornHeader => write!(f, "segment header is torn"),
            DamageKind::ShortFrameHeader { bytes_left } => {
                write!(f, "frame header cut short ({bytes_left} bytes left)")
            }
            DamageKind::LenTooLarge { len } => {
                write!(f, "frame length {len} is over the {RECORD_BYTES_MAX}-byte maximum")
            }
            DamageKind::ShortPayload { len, bytes_left } => {
                write!(f, "frame payload of {len} bytes cut short ({bytes_left} bytes left)")
            }
            DamageKind::BadChecksum => write!(f, "frame checksum mismatch"),
            DamageKind::LsnOutOfSequence { expected, found } => {
                write!(f, "frame has lsn {found}, expected {expected}")
            }
            DamageKind::SegmentGap { expected, found } => {
                write!(f, "segment starts at lsn {found} but the previous one ends before {expected}")
            }
        }
    }
}

/// The outcome of reading one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A verified record; its payload is in the buffer passed to `next`.
    Record {
        /// Its LSN (equal to the one expected).
        lsn: Lsn,
    },
    /// The limit was reached exactly at a frame boundary.
    End,
    /// The frame starting at `offset` is damaged; nothing after it can be trusted.
    Damaged {
        /// Where the damaged frame starts.
        offset: u64,
        /// What is wrong with it.
        kind: DamageKind,
    },
}

/// Reads the frames of one segment sequentially, verifying each.
pub(crate) struct FrameReader {
    reader: BufReader<File>,
    /// Offset of the next frame.
    offset: u64,
    /// Where the frames end: the file length in recovery, the last verified frame end
    /// when replaying a recovered log.
    limit: u64,
}

impl FrameReader {
    /// Reads the header of `file` (at most `limit` bytes of it) and classifies it;
    /// the reader is positioned on the first frame if the header is valid.
    pub(crate) fn open(file: File, limit: u64) -> io::Result<(SegmentHeader, FrameReader)> {
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let header_bytes = limit.min(SEGMENT_HEADER_BYTES as u64) as usize;
        let mut header = [0u8; SEGMENT_HEADER_BYTES];
        reader.read_exact(&mut header[..header_bytes])?;
        let header = decode_segment_header(&header[..header_bytes]);
        let frames = FrameReader { reader, offset: header_bytes as u64, limit };
        Ok((header, frames))
    }

    /// Offset of the next frame: after a `Record`, the end of that record.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads the next frame, expecting `expected_lsn`, into `payload` (resized to
    /// the record's length). After `Damaged` the reader must not be used again.
    pub(crate) fn next(&mut self, expected_lsn: Lsn, payload: &mut Vec<u8>) -> io::Result<Frame> {
        let start = self.offset;
        let bytes_left = self.limit.saturating_sub(start);
        if bytes_left == 0 {
            return Ok(Frame::End);
        }
        let damaged = |kind| Ok(Frame::Damaged { offset: start, kind });
        if bytes_left < FRAME_HEADER_BYTES as u64 {
            return damaged(DamageKind::ShortFrameHeader { bytes_left });
        }
        let mut header = [0u8; FRAME_HEADER_BYTES];
        self.reader.read_exact(&mut header)?;
        let len_bytes: [u8; 4] = [header[0], header[1], header[2], header[3]];
        let len = u64::from(u32::from_le_bytes(len_bytes));
        let stored_crc = u32_at(&header, 4);
        let lsn_bytes: [u8; 8] =
            [header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15]];
        let lsn = u64::from_le_bytes(lsn_bytes);
        if len > RECORD_BYTES_MAX as u64 {
            return damaged(DamageKind::LenTooLarge { len });
        }
        let payload_left = bytes_left - FRAME_HEADER_BYTES as u64;
        if len > payload_left {
            return damaged(DamageKind::ShortPayload { len, bytes_left: payload_left });
        }
        // Bounded twice: by RECORD_BYTES_MAX and by the bytes really in the file.
        payload.resize(len as usize, 0);
        self.reader.read_exact(payload)?;
        if frame_crc(len_bytes, lsn_bytes, payload) != stored_crc {
            return damaged(DamageKind::BadChecksum);
        }
        if lsn != expected_lsn {
            return damaged(DamageKind::LsnOutOfSequence { expected: expected_lsn, found: lsn });
        }
        self.offset = start + FRAME_HEADER_BYTES as u64 + len;
        Ok(Frame::Record { lsn })
    }
}

/// Size on disk of the frame of a payload of `payload_bytes` bytes.
pub(crate) fn frame_bytes(payload_bytes: usize) -> u64 {
    (FRAME_HEADER_BYTES + payload_bytes) as u64
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_by_lsn_and_round_trip() {
        let names: Vec<String> = [1, 9, 10, 100, u64::MAX].into_iter().map(segment_file_name).collect();
        assert_eq!(names[0], "00000000000000000001.wal");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, names);
        for (name, lsn) in names.iter().zip([1, 9, 10, 100, u64::MAX]) {
            assert_eq!(parse_segment_file_name(name), Some(lsn));
        }
    }

    #[test]
    fn other_file_names_are_not_segments() {
        for name in [
            "1.wal",
            "0000000000000000001.wal",
            "000000000000000000001.wal",
            "0000000000000000000a.wal",
            "00000000000000000001.wal.tmp",
            "00000000000000000001.log",
            "+0000000000000000001.wal",
            "99999999999999999999.wal", // over u64::MAX
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn header_round_trips() {
        let header = encode_segment_header(42);
        assert_eq!(decode_segment_header(&header), SegmentHeader::Valid { first_lsn: 42 });
    }

    #[test]
    fn short_zeroed_or_badly_summed_headers_are_torn() {
        let header = encode_segment_header(7);
        for cut in 0..SEGMENT_HEADER_BYTES {
            assert_eq!(decode_segment_header(&header[..cut]), SegmentHeader::Torn, "{cut}");
        }
        assert_eq!(decode_segment_header(&[0u8; 32]), SegmentHeader::Torn);
        let mut damaged = header;
        damaged[20] ^= 1;
        assert_eq!(decode_segment_header(&damaged), SegmentHeader::Torn);
    }

    #[test]
    fn another_programs_file_is_foreign() {
        let sqlite = *b"SQLite format 3\0and then some more bytes";
        assert!(matches!(decode_segment_header(&sqlite[..32]), SegmentHeader::Foreign { .. }));
        assert!(matches!(decode_segment_header(b"x"), SegmentHeader::Foreign { .. }));
    }

    #[test]
    fn a_newer_version_is_unsupported() {
        let mut header = encode_segment_header(1);
        header[8..12].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32c::crc32c(&header[..28]);
        header[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&header), SegmentHeader::Unsupported { version: 2 });
    }

    #[test]
    fn frame_layout_is_len_crc_lsn_payload() {
        let mut buffer = Vec::new();
        encode_frame(&mut buffer, 0x0102, b"hey");
        assert_eq!(buffer.len() as u64, frame_bytes(3));
        assert_eq!(&buffer[0..4], &3u32.to_le_bytes());
        assert_eq!(&buffer[8..16], &0x0102u64.to_le_bytes());
        assert_eq!(&buffer[16..], b"hey");
        let crc = crc32c::crc32c(&[&buffer[0..4], &buffer[8..]].concat());
        assert_eq!(&buffer[4..8], &crc.to_le_bytes());
    }
}

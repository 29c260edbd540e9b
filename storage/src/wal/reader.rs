//! Reading a recovered WAL back: the iterator behind `Wal::read_from`.
//!
//! Owns the replay path. Guarantees: it streams segment after segment through one
//! bounded read buffer, so a replay of millions of records holds one record at a
//! time; it reads only up to the durable end fixed when the read began, so records
//! appended later are never returned; it verifies every frame again (checksum, length,
//! LSN sequence), because the files may have changed since recovery, and ends with
//! an error rather than return a damaged payload or skip a record.

use std::fs::File;
use std::path::PathBuf;

use crate::error::StorageError;
use crate::log::{Lsn, Record};
use crate::wal::format::{Frame, FrameReader, SegmentHeader};

/// A segment to read, up to `end_offset`.
#[derive(Debug, Clone)]
pub(crate) struct Span {
    pub(crate) path: PathBuf,
    pub(crate) first_lsn: Lsn,
    pub(crate) end_offset: u64,
}

/// Streams the records `from..=until` out of a list of spans.
pub(crate) struct SegmentReader {
    spans: std::vec::IntoIter<Span>,
    /// The span being read, and its path for errors.
    current: Option<(FrameReader, PathBuf)>,
    /// The LSN the next frame must carry.
    next_lsn: Lsn,
    /// Records below it are read, verified and skipped.
    from: Lsn,
    /// The durable LSN when the read began: the last record returned.
    until: Lsn,
    /// Payload buffer of skipped records, reused.
    scratch: Vec<u8>,
    /// The last span opened, to name it if the log ends too early.
    last_path: PathBuf,
    /// Set after the last record or an error: the iterator is fused.
    finished: bool,
}

impl SegmentReader {
    /// `spans` must be consecutive segments, the first holding `from` (or starting at
    /// it), the last ending at or after `until`.
    pub(crate) fn new(spans: Vec<Span>, from: Lsn, until: Lsn) -> Self {
        let next_lsn = spans.first().map_or(from, |span| span.first_lsn);
        let last_path = spans.first().map(|s| s.path.clone()).unwrap_or_default();
        SegmentReader {
            spans: spans.into_iter(),
            current: None,
            next_lsn,
            from,
            until,
            scratch: Vec::new(),
            last_path,
            finished: false,
        }
    }

    fn advance(&mut self) -> Result<Option<Record>, StorageError> {
        loop {
            if self.next_lsn > self.until {
                return Ok(None);
            }
            let Some((frames, path)) = &mut self.current else {
                self.open_next_span()?;
                continue;
            };
            let skipping = self.next_lsn < self.from;
            let mut payload = Vec::new();
            let buffer = if skipping { &mut self.scratch } else { &mut payload };
            let frame =
                frames.next(self.next_lsn, buffer).map_err(|e| StorageError::io("read segment", path.clone(), e))?;
            match frame {
                Frame::Record { lsn } => {
                    self.next_lsn += 1;
                    if !skipping {
                        return Ok(Some(Record { lsn, payload }));
                    }
                }
                Frame::End => self.current = None,
                Frame::Damaged { offset, kind } => {
                    return Err(StorageError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason: format!("{kind} (the segment changed after recovery verified it)"),
                    });
                }
            }
        }
    }

    fn open_next_span(&mut self) -> Result<(), StorageError> {
        let Some(span) = self.spans.next() else {
            return Err(StorageError::Corrupt {
                path: self.last_path.clone(),
                offset: 0,
                reason: format!("the log ends before lsn {}, but lsn {} is durable", self.next_lsn, self.until),
            });
        };
        let file = File::open(&span.path).map_err(|e| StorageError::io("open segment", &span.path, e))?;
        let (header, frames) = FrameReader::open(file, span.end_offset)
            .map_err(|e| StorageError::io("read segment header", &span.path, e))?;
        let continues = span.first_lsn == self.next_lsn;
        if header != (SegmentHeader::Valid { first_lsn: span.first_lsn }) || !continues {
            return Err(StorageError::Corrupt {
                path: span.path,
                offset: 0,
                reason: format!(
                    "segment header changed after recovery (expected a segment starting at \
                     lsn {}, found {header:?})",
                    self.next_lsn
                ),
            });
        }
        self.last_path = span.path.clone();
        self.current = Some((frames, span.path));
        Ok(())
    }
}

impl Iterator for SegmentReader {
    type Item = Result<Record, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let item = self.advance().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.finished = true;
        }
        item
    }
}

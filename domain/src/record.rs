//! The log's record of a command, and [`replay`]: what makes the log the state.
//!
//! A [`Record`] is a stamped command (every id and random value filled in by the writer)
//! with the instant the writer applied it and who sent it. Encoded as a schema-version
//! byte followed by postcard, it is what the write-ahead log (or the replicated stream)
//! stores. [`replay`] applies records with the same [`apply`] the writer used, so a state
//! rebuilt from its log equals the one that wrote it, bit for bit.
//!
//! Guarantees: decoding bytes from disk never panics (anything malformed, a version this
//! build cannot read or trailing bytes is an error); a record that was accepted once and
//! is refused on replay is reported, never skipped.

use crate::clock::Timestamp;
use crate::command::{Actor, Command};
use crate::error::{Error, Result};
use crate::state::{Effects, State, apply};

/// A stamped command as the log records it: everything `apply` needs to repeat it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The writer's clock when it applied the command.
    pub at: Timestamp,
    /// Who sent it.
    pub actor: Actor,
    /// The command, with its ids filled in.
    pub command: Command,
}

impl Record {
    /// The version of the payload encoding, written as the first byte of every
    /// encoded record. Bump it when a change to [`Command`] is not readable by the
    /// previous decoder, and keep decoding the old version.
    pub const SCHEMA_VERSION: u8 = 13;

    /// The bytes the log stores: the schema version, then the record in postcard.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the encoding of [`Record::encode`] to `out` (no allocation of its own).
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<()> {
        out.push(Self::SCHEMA_VERSION);
        let taken = std::mem::take(out);
        *out = postcard::to_extend(self, taken)
            .map_err(|e| Error::Internal(format!("cannot encode a log record: {e}")))?;
        Ok(())
    }

    /// Decodes bytes written by [`Record::encode`]. Bytes from disk are input
    /// from outside: anything malformed is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Record> {
        match bytes.split_first() {
            Some((&Self::SCHEMA_VERSION, body)) => {
                let (record, rest) = postcard::take_from_bytes::<Record>(body)
                    .map_err(|e| Error::Invalid(format!("log record does not decode: {e}")))?;
                if rest.is_empty() {
                    Ok(record)
                } else {
                    Err(Error::Invalid(format!("log record has {} trailing bytes", rest.len())))
                }
            }
            Some((v, _)) => Err(Error::Invalid(format!(
                "log record has schema version {v}, this version reads {}",
                Self::SCHEMA_VERSION
            ))),
            None => Err(Error::Invalid("empty log record".into())),
        }
    }
}

/// Replays `records` onto `state`. Records were all accepted once, so a refusal
/// now means the log and the code disagree: that is reported, never skipped.
pub fn replay<'a>(state: &mut State, records: impl IntoIterator<Item = &'a Record>) -> Result<()> {
    let mut fx = Effects::default();
    for (i, r) in records.into_iter().enumerate() {
        apply(state, r.actor, &r.command, r.at, &mut fx)
            .map_err(|e| Error::Internal(format!("replay of record {i} ({}) was refused: {e}", r.command.name())))?;
        fx.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::id::{TripId, UserId};

    fn sample() -> Record {
        Record {
            at: Timestamp::from_millis(1_700_000_000_000),
            actor: Actor::User(UserId::from_raw(7).unwrap()),
            command: Command::CancelTrip {
                trip_id: TripId::from_raw(9).unwrap(),
                code: crate::trip::CancelReason::DriverLate,
                reason: "late".into(),
            },
        }
    }

    #[test]
    fn records_round_trip_and_refuse_other_versions_and_trailing_bytes() {
        let r = sample();
        let mut bytes = r.encode().unwrap();
        assert_eq!(bytes[0], Record::SCHEMA_VERSION);
        assert_eq!(Record::decode(&bytes).unwrap(), r);
        bytes.push(0);
        assert!(Record::decode(&bytes).is_err());
        bytes.pop();
        for other in [1, Record::SCHEMA_VERSION + 1] {
            bytes[0] = other;
            assert!(Record::decode(&bytes).is_err(), "version {other}");
        }
        assert!(Record::decode(&[]).is_err());
    }

    proptest! {
        /// What `fuzz/fuzz_targets/wal_record.rs` runs, on stable, in every test run.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn decoding_a_damaged_record_never_panics(flip in 0usize..64, bit in 0u8..8, cut in 0usize..64) {
            let mut bytes = sample().encode().unwrap();
            let i = flip % bytes.len();
            bytes[i] ^= 1 << bit;
            let _ = Record::decode(&bytes);
            bytes.truncate(cut % bytes.len());
            let _ = Record::decode(&bytes);
        }
    }
}

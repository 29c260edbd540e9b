//! Property tests: random batches, payload sizes, syncs and segment sizes.
//! - After a crash that keeps any part of the unsynced tail, reopening returns a
//!   prefix of what was appended that holds everything synced, and the log goes on.
//! - The WAL and `MemLog` agree step by step: the same LSNs, the same durable
//!   records (the WAL may be durable further, never less), the same refusals.

use std::fs::OpenOptions;

use proptest::prelude::*;

use crate::log::{CommandLog, Lsn, Record};
use crate::mem_log::MemLog;
use crate::wal::{SEGMENT_BYTES_MIN, Wal, WalConfig};

#[derive(Debug, Clone)]
struct Step {
    /// Payload sizes of the batch appended.
    payload_lens: Vec<usize>,
    /// Whether the batch is synced.
    sync: bool,
    /// After a sync, release below this share (per mille) of the durable LSN.
    release_per_mille: Option<u64>,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let step = (prop::collection::vec(0usize..300, 1..10), any::<bool>(), prop::option::weighted(0.2, 0u64..=1000))
        .prop_map(|(payload_lens, sync, release_per_mille)| Step { payload_lens, sync, release_per_mille });
    prop::collection::vec(step, 1..40)
}

fn bytes_of(lsn: Lsn, len: usize) -> Vec<u8> {
    (0..len).map(|i| (lsn as usize).wrapping_mul(131).wrapping_add(i) as u8).collect()
}

fn batch(first: Lsn, step: &Step) -> Vec<Vec<u8>> {
    (first..).zip(&step.payload_lens).map(|(lsn, &len)| bytes_of(lsn, len)).collect()
}

fn read(log: &dyn CommandLog, from: Lsn) -> Result<Vec<Record>, TestCaseError> {
    Ok(log.read_from(from)?.collect::<Result<_, _>>()?)
}

fn config(segment_bytes_max: u64) -> WalConfig {
    WalConfig { segment_bytes_max, ..WalConfig::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_crash_keeps_a_prefix_that_holds_everything_synced(
        steps in steps(),
        segment_bytes_max in SEGMENT_BYTES_MIN..4 * SEGMENT_BYTES_MIN,
        cut_per_mille in 0u64..=1000,
    ) {
        let dir = tempfile::tempdir()?;
        let config = config(segment_bytes_max);
        let (mut wal, _) = Wal::open(dir.path(), config.clone())?;
        let mut appended: Vec<Vec<u8>> = Vec::new();
        let mut synced = 0;
        for step in &steps {
            let first = appended.len() as Lsn + 1;
            let payloads = batch(first, step);
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(wal.append(&slices)?, first);
            appended.extend(payloads);
            if step.sync {
                synced = wal.sync()?;
                prop_assert_eq!(synced, appended.len() as Lsn);
            }
        }
        // The crash keeps the synced bytes of the active segment and part of the rest
        // (earlier segments were synced before the next one was created).
        let (segment, durable_end, end) = wal.active_offsets();
        drop(wal);
        let cut = durable_end + (end - durable_end) * cut_per_mille / 1000;
        OpenOptions::new().write(true).open(&segment)?.set_len(cut)?;

        let (mut wal, report) = Wal::open(dir.path(), config.clone())?;
        let recovered = read(&wal, 1)?;
        prop_assert!(recovered.len() as Lsn >= synced);
        prop_assert_eq!(report.last_lsn, recovered.len() as Lsn);
        for (index, record) in recovered.iter().enumerate() {
            prop_assert_eq!(record.lsn, index as Lsn + 1);
            prop_assert_eq!(&record.payload, &appended[index]);
        }
        if cut == end {
            prop_assert_eq!(recovered.len(), appended.len());
            prop_assert!(report.is_clean());
        }

        let next = recovered.len() as Lsn + 1;
        prop_assert_eq!(wal.append(&[b"after the crash"])?, next);
        wal.sync()?;
        drop(wal);
        let (wal, report) = Wal::open(dir.path(), config)?;
        prop_assert!(report.is_clean());
        let lsns: Vec<Lsn> = read(&wal, 1)?.iter().map(|r| r.lsn).collect();
        prop_assert_eq!(lsns, (1..=next).collect::<Vec<_>>());
    }

    #[test]
    fn the_wal_and_the_mem_log_agree(
        steps in steps(),
        segment_bytes_max in SEGMENT_BYTES_MIN..4 * SEGMENT_BYTES_MIN,
    ) {
        let dir = tempfile::tempdir()?;
        let config = config(segment_bytes_max);
        let (mut wal, _) = Wal::open(dir.path(), config.clone())?;
        let mut mem = MemLog::new();
        let mut released_below: Lsn = 1;
        for step in &steps {
            let payloads = batch(wal.last_lsn() + 1, step);
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(wal.append(&slices)?, mem.append(&slices)?);
            if step.sync {
                prop_assert_eq!(wal.sync()?, mem.sync()?);
                if let Some(per_mille) = step.release_per_mille {
                    let lsn = (wal.durable_lsn() + 1) * per_mille / 1000;
                    wal.release_below(lsn)?;
                    mem.release_below(lsn)?;
                    released_below = released_below.max(lsn);
                }
            }
            prop_assert_eq!(wal.last_lsn(), mem.last_lsn());
            // The WAL may be durable further: it syncs a full segment before the next.
            prop_assert!(mem.durable_lsn() <= wal.durable_lsn());
            prop_assert!(wal.durable_lsn() <= wal.last_lsn());
            prop_assert!(wal.first_lsn() <= released_below.max(1));
            let from_wal = read(&wal, released_below)?;
            let wal_lsns: Vec<Lsn> = from_wal.iter().map(|r| r.lsn).collect();
            prop_assert_eq!(wal_lsns, (released_below.max(1)..=wal.durable_lsn()).collect::<Vec<_>>());
            let durable_in_both: Vec<Record> = from_wal
                .into_iter()
                .filter(|r| r.lsn <= mem.durable_lsn())
                .collect();
            prop_assert_eq!(durable_in_both, read(&mem, released_below)?);
            prop_assert!(wal.release_below(wal.durable_lsn() + 2).is_err());
            prop_assert!(mem.release_below(mem.durable_lsn() + 2).is_err());
        }
        wal.sync()?;
        mem.sync()?;
        drop(wal);
        let (wal, _) = Wal::open(dir.path(), config)?;
        prop_assert_eq!(read(&wal, released_below)?, read(&mem, released_below)?);
    }
}

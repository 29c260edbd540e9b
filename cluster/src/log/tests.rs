//! The log's rules on the in-memory stream.

use super::*;
use crate::stream::MemStream;

fn open(stream: &Arc<MemStream>, node: &str) -> SharedLog<Arc<MemStream>> {
    match SharedLog::open(Arc::clone(stream), "T", node, Arc::new(LogShared::default()), 0) {
        Ok(log) => log,
        Err(e) => panic!("open: {e}"),
    }
}

fn lsns(log: &SharedLog<Arc<MemStream>>, from: Lsn) -> Vec<Lsn> {
    let Ok(records) = log.read_from(from) else { return vec![u64::MAX] };
    records.map(|r| r.map(|r| r.lsn).unwrap_or(u64::MAX)).collect()
}

fn commit(log: &mut SharedLog<Arc<MemStream>>, payloads: &[&[u8]]) -> Result<Lsn, StorageError> {
    log.append(payloads)?;
    log.sync()
}

#[test]
fn a_batch_is_one_message_or_several_when_large() {
    let stream = Arc::new(MemStream::new());
    let mut log = open(&stream, "a");
    assert!(log.claim().is_ok());
    assert_eq!(commit(&mut log, &[b"1", b"2", b"3"]).ok(), Some(3));
    assert_eq!(stream.messages().len(), 2, "a claim marker and one message");
    let big = vec![1u8; 300 * 1024];
    assert_eq!(commit(&mut log, &[&big, &big, &big, &big]).ok(), Some(7));
    let messages = stream.messages();
    assert_eq!(messages.len(), 4, "1.2 MiB in messages of at most 800 KiB: two");
    assert!(messages.iter().all(|(_, m)| m.payload.len() <= MESSAGE_BYTES_MAX));
    assert_eq!(lsns(&log, 0), (1..=7).collect::<Vec<_>>());
    assert_eq!(lsns(&log, 5), vec![5, 6, 7]);
    assert_eq!(lsns(&log, 8), Vec::<Lsn>::new());
    let too_big = vec![0u8; MESSAGE_BYTES_MAX + 1];
    assert!(matches!(log.append(&[&too_big]), Err(StorageError::RecordTooLarge { .. })));
    assert_eq!(log.last_lsn(), 7, "a refused append changes nothing");
}

#[test]
fn an_older_claim_is_fenced_by_a_newer_one() {
    let stream = Arc::new(MemStream::new());
    let mut a = open(&stream, "a");
    let mut b = open(&stream, "b");
    assert!(a.claim().is_ok());
    assert!(matches!(b.claim(), Err(StorageError::Fenced { .. })), "b has not seen a's claim");
    assert_eq!(b.follow(0, Duration::ZERO).map(|r| r.len()).ok(), Some(0));
    assert!(b.claim().is_ok());
    assert!(matches!(commit(&mut a, &[b"x"]), Err(StorageError::Fenced { .. })));
    assert!(!a.is_claimed());
    assert_eq!(commit(&mut b, &[b"y"]).ok(), Some(1));
    let followed = a.follow(0, Duration::ZERO).unwrap_or_default();
    assert_eq!(followed, vec![Record { lsn: 1, payload: b"y".to_vec() }]);
}

#[test]
fn a_publish_whose_ack_was_lost_is_stored_once_whichever_check_comes_first() {
    for sequence_first in [false, true] {
        let stream = Arc::new(MemStream::new());
        if sequence_first {
            stream.check_sequence_first();
        }
        let mut log = open(&stream, "a");
        assert!(log.claim().is_ok());
        stream.lose_next_ack();
        assert_eq!(commit(&mut log, &[b"x"]).ok(), Some(1), "sequence first: {sequence_first}");
        assert_eq!(stream.messages().len(), 2);
        assert_eq!(commit(&mut log, &[b"y"]).ok(), Some(2));
    }
}

#[test]
fn follow_refuses_a_gap_or_an_overlap() {
    for first_lsn in [3, 1] {
        let stream = Arc::new(MemStream::new());
        let mut log = open(&stream, "a");
        let message = |first_lsn, id: &str| LogMessage {
            first_lsn,
            count: 1,
            node: "x".into(),
            term: 1,
            claim: false,
            msg_id: id.into(),
            payload: postcard::to_allocvec(&vec![b"p".to_vec()]).unwrap_or_default(),
        };
        stream.force(message(1, "m1"));
        stream.force(message(first_lsn, "m2"));
        let error = log.follow(0, Duration::ZERO).err();
        assert!(
            matches!(&error, Some(StorageError::Corrupt { reason, .. }) if reason.contains(if first_lsn == 3 { "gap" } else { "overlap" })),
            "{error:?}"
        );
    }
}

#[test]
fn follow_from_behind_the_view_restarts_at_the_right_record() {
    let stream = Arc::new(MemStream::new());
    let mut a = open(&stream, "a");
    assert!(a.claim().is_ok());
    assert!(commit(&mut a, &[b"1", b"2", b"3"]).is_ok());
    assert!(commit(&mut a, &[b"4"]).is_ok());
    let mut b = open(&stream, "b");
    assert_eq!(b.durable_lsn(), 4, "opened at the stream's end");
    let again: Vec<Lsn> = b.follow(1, Duration::ZERO).unwrap_or_default().iter().map(|r| r.lsn).collect();
    assert_eq!(again, vec![2, 3, 4]);
    assert!(b.follow(5, Duration::ZERO).is_err(), "after the end");
}

#[test]
fn a_purged_prefix_is_released_and_only_the_writer_purges() {
    let stream = Arc::new(MemStream::new());
    let mut a = open(&stream, "a");
    assert!(a.claim().is_ok());
    assert!(commit(&mut a, &[b"1", b"2"]).is_ok());
    assert!(commit(&mut a, &[b"3"]).is_ok());
    stream.purge_below(3).ok();
    assert!(matches!(a.read_from(1), Err(StorageError::Released { from: 1, first_available: 3 })));
    assert_eq!(lsns(&a, 3), vec![3]);
    assert!(matches!(
        SharedLog::open(Arc::clone(&stream), "T", "c", Arc::default(), 1),
        Err(StorageError::Released { .. })
    ));
    // Below RETAIN_RECORDS nothing is purged; a follower never purges.
    let before = stream.messages().len();
    assert!(a.release_below(4).is_ok());
    let Ok(mut b) = SharedLog::open(Arc::clone(&stream), "T", "b", Arc::default(), 2) else {
        panic!("a checkpoint at 2 needs lsn 3, which is kept")
    };
    assert!(b.release_below(4).is_ok());
    assert_eq!(stream.messages().len(), before);
    assert!(matches!(a.release_below(5), Err(StorageError::InvalidLsn { .. })));
}

#[test]
fn reopen_drops_the_unsynced_batch_and_moves_to_the_end() {
    let stream = Arc::new(MemStream::new());
    let mut a = open(&stream, "a");
    assert!(a.claim().is_ok());
    assert!(a.append(&[b"lost"]).is_ok());
    assert_eq!(a.last_lsn(), 1);
    assert!(a.reopen().is_ok());
    assert_eq!((a.last_lsn(), a.durable_lsn()), (0, 0));
    assert!(a.is_claimed(), "nothing landed meanwhile: the claim holds");
    assert_eq!(commit(&mut a, &[b"kept"]).ok(), Some(1));
}

#[test]
fn a_lower_retain_purges_what_the_checkpoint_covers_and_keeps_the_rest() {
    let stream = Arc::new(MemStream::new());
    let mut a = open(&stream, "a").with_retain(2);
    assert!(a.claim().is_ok());
    for i in 0..6u8 {
        assert!(commit(&mut a, &[&[i]]).is_ok());
    }
    // A checkpoint at 5 (release below 6), keeping 2: LSN 4 onwards stays.
    assert!(a.release_below(6).is_ok());
    assert!(matches!(a.read_from(3), Err(StorageError::Released { from: 3, first_available: 4 })));
    assert_eq!(lsns(&a, 4), vec![4, 5, 6]);
    // Keeping none, released up to the log's end (`lsn` = end + 1 keeps the last record).
    let mut a = a.with_retain(0);
    assert!(a.release_below(7).is_ok());
    assert_eq!(lsns(&a, 6), vec![6]);
    assert!(matches!(a.read_from(5), Err(StorageError::Released { .. })));
    // A follower with the same setting still never purges.
    let Ok(b) = SharedLog::open(Arc::clone(&stream), "T", "b", Arc::default(), 5) else {
        panic!("a checkpoint at 5 needs lsn 6, which is kept")
    };
    let mut b = b.with_retain(0);
    let before = stream.messages().len();
    assert!(b.release_below(7).is_ok());
    assert_eq!(stream.messages().len(), before);
}

//! The spool's tests: appends, reads, acknowledgements, and recovery from crashes and damage.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn options(dir: &Path) -> Options {
    Options {
        dir: dir.to_owned(),
        segment_bytes: 1024,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    files.sort();
    files
}

fn payloads(entries: &[Entry]) -> Vec<Vec<u8>> {
    entries.iter().map(|e| e.payload.clone()).collect()
}

#[tokio::test]
async fn a_bounded_read_stops_at_a_record_too_large_for_it_not_after_it() {
    // Segment one holds a small and a large record, segment two a small one: a bound with
    // room for the small records but not the large one must stop after the first, or the
    // large one would be passed over (and the forwarder reads on from the last it got).
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    for size in [100, 900, 100] {
        spool.append(vec![7; size]).await.unwrap();
    }
    assert_eq!(segment_files(dir.path()).len(), 2, "1 KiB segments");
    let bound = 2 * (HEADER_BYTES + 100);
    let entries = spool.read_bounded(0, 100, bound).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0]);
    let entries = spool.read_bounded(1, 100, bound).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1]);
}

#[tokio::test]
async fn appended_records_read_back_oldest_first_and_acknowledged_segments_go() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
    assert_eq!(recovery, Recovery::default());
    let mut seqs = Vec::new();
    for i in 0..40u8 {
        seqs.push(spool.append(vec![i; 100]).await.unwrap());
    }
    assert_eq!(seqs, (0..40).collect::<Vec<_>>());
    assert!(segment_files(dir.path()).len() > 2, "1 KiB segments roll");

    let entries = spool.read(0, 100).unwrap();
    assert_eq!(
        payloads(&entries),
        (0..40u8).map(|i| vec![i; 100]).collect::<Vec<_>>()
    );
    assert_eq!(spool.read(35, 100).unwrap().len(), 5);
    // A byte bound, across segments (a 1 KiB segment holds 8): whole records only, and
    // always one, however small the bound.
    let size = HEADER_BYTES + 100;
    let seqs_read = |max_bytes| -> Vec<Seq> {
        let entries = spool.read_bounded(2, 100, max_bytes).unwrap();
        entries.iter().map(|entry| entry.seq).collect()
    };
    assert_eq!(seqs_read(0), [2]);
    assert_eq!(seqs_read(size - 1), [2]);
    assert_eq!(seqs_read(2 * size), [2, 3]);
    assert_eq!(seqs_read(20 * size - 1), (2..21).collect::<Vec<_>>());
    assert_eq!(seqs_read(u64::MAX), (2..40).collect::<Vec<_>>());
    let depth = spool.depth();
    assert_eq!(depth.records, 40);
    assert_eq!(depth.bytes, 40 * (HEADER_BYTES + 100));
    assert!(depth.oldest.is_some());

    for seq in seqs {
        spool.acknowledge(seq).unwrap();
    }
    assert_eq!(spool.depth(), Depth::default());
    assert!(spool.read(0, 100).unwrap().is_empty());
    // Only the active segment is left.
    assert_eq!(segment_files(dir.path()).len(), 1);
}

#[tokio::test]
async fn unacknowledged_records_survive_a_restart_and_keep_their_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for i in 0..30u8 {
            spool.append(vec![i; 50]).await.unwrap();
        }
        for seq in 0..10 {
            spool.acknowledge(seq).unwrap();
        }
    }
    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
    // Acknowledgements are not persisted and the first segment still holds 10..=13
    // unacknowledged: all 30 come back (a restart forwards 0..=9 again, same ce_id).
    assert_eq!(
        recovery,
        Recovery {
            records: 30,
            ..Recovery::default()
        }
    );
    let entries = spool.read(0, 100).unwrap();
    assert_eq!(
        payloads(&entries),
        (0..30u8).map(|i| vec![i; 50]).collect::<Vec<_>>()
    );
    assert_eq!(spool.append(b"next".to_vec()).await.unwrap(), 30);
}

#[tokio::test]
async fn persisted_acknowledgements_are_not_forwarded_again_and_sequences_go_on() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for i in 0..30u8 {
            spool.append(vec![i; 50]).await.unwrap();
        }
        for seq in (0..12).chain([20]) {
            spool.acknowledge(seq).unwrap();
        }
        spool.persist_acknowledgements().unwrap();
    }
    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
    // Below the watermark (12) nothing comes back; 20 was acknowledged out of order, above
    // it, and is forwarded again.
    assert_eq!(recovery.records, 18);
    let seqs: Vec<Seq> = spool.read(0, 100).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (12..30).collect::<Vec<_>>());

    for seq in 12..30 {
        spool.acknowledge(seq).unwrap();
    }
    spool.persist_acknowledgements().unwrap();
    drop(spool);
    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();
    assert_eq!(recovery.records, 0);
    assert!(
        segment_files(dir.path()).is_empty(),
        "all acknowledged: deleted"
    );
    // Numbering goes on above the watermark, never below it.
    assert_eq!(spool.append(b"next".to_vec()).await.unwrap(), 30);
}

#[tokio::test]
async fn a_torn_last_record_is_dropped_and_counted_and_every_earlier_one_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for i in 0..5u8 {
            spool.append(vec![i; 20]).await.unwrap();
        }
    }
    let file = segment_files(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&file).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .unwrap()
        .set_len(len - 7)
        .unwrap();

    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();

    assert_eq!(
        recovery,
        Recovery {
            records: 4,
            torn: 1,
            damaged: 0
        }
    );
    let entries = spool.read(0, 100).unwrap();
    assert_eq!(
        payloads(&entries),
        (0..4u8).map(|i| vec![i; 20]).collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().len(),
        4 * (HEADER_BYTES + 20)
    );
}

fn aside_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join(UNDELIVERABLE_DIR))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_damaged_record_in_a_closed_segment_costs_only_itself_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (spool, _) = Spool::open(options(dir.path())).unwrap();
        for i in 0..30u8 {
            spool.append(vec![i; 100]).await.unwrap();
        }
    }
    let files = segment_files(dir.path());
    let first = &files[0];
    let mut bytes = std::fs::read(first).unwrap();
    let record = (HEADER_BYTES + 100) as usize;
    bytes[record + 30] ^= 0xff; // a flipped byte in record 1's payload
    bytes[3 * record + 1] ^= 0x01; // and one in record 3's length
    std::fs::write(first, bytes).unwrap();

    let (spool, recovery) = Spool::open(options(dir.path())).unwrap();

    assert_eq!(
        recovery,
        Recovery {
            records: 28,
            torn: 0,
            damaged: 2
        }
    );
    let seqs: Vec<Seq> = spool.read(0, 100).unwrap().iter().map(|e| e.seq).collect();
    let expected: Vec<Seq> = (0..30).filter(|seq| ![1, 3].contains(seq)).collect();
    assert_eq!(seqs, expected);
    assert_eq!(
        aside_files(dir.path()),
        [
            format!("{:020}-{:020}.damaged", 1, 1),
            format!("{:020}-{:020}.damaged", 3, 3)
        ]
    );
    assert_eq!(spool.depth().records, 28);
}

#[tokio::test]
async fn a_record_damaged_after_opening_is_set_aside_when_read_and_the_rest_flow() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    for i in 0..30u8 {
        spool.append(vec![i; 100]).await.unwrap();
    }
    let first = segment_files(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[(HEADER_BYTES + 100) as usize + 50] ^= 0x04;
    std::fs::write(&first, bytes).unwrap();

    let entries = spool.read(0, 100).unwrap();

    let seqs: Vec<Seq> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..30).filter(|seq| *seq != 1).collect::<Vec<_>>());
    assert_eq!(spool.depth().records, 29, "the damaged one is acknowledged");
    assert_eq!(aside_files(dir.path()).len(), 1);
    assert_eq!(spool.read(0, 100).unwrap().len(), 29, "and not read again");
}

#[tokio::test]
async fn a_set_aside_record_is_kept_durably_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    spool.append(b"too big for Kafka".to_vec()).await.unwrap();
    let entry = spool.read(0, 1).unwrap().remove(0);

    let path = spool.set_aside(&entry, "too_large").unwrap();

    assert_eq!(std::fs::read(path).unwrap(), b"too big for Kafka");
    assert_eq!(spool.depth().records, 0);
}

#[tokio::test]
async fn set_aside_files_are_counted_and_deleted_once_older_than_the_retention() {
    // Arrange: three records set aside, the first written eight days ago.
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();
    let mut paths = Vec::new();
    for payload in [&b"first"[..], b"second", b"third"] {
        spool.append(payload.to_vec()).await.unwrap();
        let entry = spool.read(0, 1).unwrap().remove(0);
        paths.push(spool.set_aside(&entry, "too_large").unwrap());
    }
    let now = std::time::SystemTime::now();
    let day = Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(&paths[0])
        .unwrap()
        .set_modified(now - 8 * day)
        .unwrap();

    // Act
    let kept_forever = files::age_set_aside(dir.path(), None, now).unwrap();
    let aged = files::age_set_aside(dir.path(), Some(7 * day), now).unwrap();
    let again = spool.age_set_aside(Some(7 * day)).unwrap();

    // Assert
    assert_eq!((kept_forever.files, kept_forever.bytes), (3, 16));
    assert!(kept_forever.oldest.unwrap() >= 8 * day, "{kept_forever:?}");
    assert!(kept_forever.expired.is_empty());
    assert_eq!(aged.expired, [paths[0].clone()]);
    assert_eq!((aged.files, aged.bytes), (2, 11));
    assert!(aged.oldest.unwrap() < day, "{aged:?}");
    assert!(!paths[0].exists() && paths[1].exists() && paths[2].exists());
    assert_eq!((again.files, again.expired.len()), (2, 0));
}

#[tokio::test]
async fn every_file_and_directory_the_spool_creates_is_its_owners_alone() {
    // Under a umask that would let others read (as 0022 does).
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool").join("ingress-0");
    let (spool, _) = Spool::open(options(&dir)).unwrap();
    for _ in 0..20 {
        spool.append(vec![1; 100]).await.unwrap();
    }
    spool.acknowledge(0).unwrap();
    spool.persist_acknowledgements().unwrap();
    let entry = spool.read(1, 1).unwrap().remove(0);
    spool.set_aside(&entry, "too_large").unwrap();

    let mut seen = Vec::new();
    let mut pending = vec![parent.path().join("spool")];
    while let Some(path) = pending.pop() {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        let name = path
            .strip_prefix(parent.path())
            .unwrap()
            .display()
            .to_string();
        if path.is_dir() {
            assert_eq!(mode, 0o700, "{name}: {mode:o}");
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode, 0o600, "{name}: {mode:o}");
        }
        seen.push(name);
    }
    seen.sort();
    // Segments, the watermark, the lock and a record set aside: each kind was looked at.
    for kind in [".seg", "ACKED", "LOCK", "undeliverable/"] {
        assert!(
            seen.iter().any(|name| name.contains(kind)),
            "{kind}: {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_full_spool_refuses_appends_and_keeps_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(Options {
        max_bytes: 3 * (HEADER_BYTES + 100),
        ..options(dir.path())
    })
    .unwrap();
    for _ in 0..3 {
        spool.append(vec![1; 100]).await.unwrap();
    }

    let refused = spool.append(vec![2; 100]).await;

    assert!(
        matches!(refused, Err(SpoolError::Full { .. })),
        "{refused:?}"
    );
    assert_eq!(spool.read(0, 10).unwrap().len(), 3);
    spool.acknowledge(0).unwrap();
    assert!(spool.append(vec![3; 100]).await.is_ok(), "room again");
}

#[tokio::test]
async fn a_spool_that_does_not_drain_refuses_appends_once_its_oldest_is_too_old() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(Options {
        max_age: Duration::from_millis(200),
        ..options(dir.path())
    })
    .unwrap();
    let first = spool.append(vec![1; 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!spool.accepts(10));

    let refused = spool.append(vec![2; 10]).await;

    assert!(
        matches!(refused, Err(SpoolError::Stale { .. })),
        "{refused:?}"
    );
    spool.acknowledge(first).unwrap();
    assert!(spool.accepts(10));
    assert!(
        spool.append(vec![3; 10]).await.is_ok(),
        "drained: taken again"
    );
}

#[tokio::test]
async fn a_second_spool_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(options(dir.path())).unwrap();

    let second = Spool::open(options(dir.path()));

    assert!(matches!(second, Err(SpoolError::Locked(_))), "{second:?}");
    drop(spool);
    assert!(Spool::open(options(dir.path())).is_ok(), "free once closed");
}

#[tokio::test]
async fn appends_waiting_together_share_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, _) = Spool::open(Options {
        segment_bytes: 1 << 20,
        ..options(dir.path())
    })
    .unwrap();
    // The writer cannot take the lock: every append queues up behind the first batch.
    let guard = spool.state.lock().unwrap();
    let answers: Vec<_> = (0..50u8)
        .map(|i| {
            let (done, answer) = oneshot::channel();
            spool
                .appends
                .send(Append {
                    payload: vec![i; 10],
                    done,
                })
                .unwrap();
            answer
        })
        .collect();
    drop(guard);
    for answer in answers {
        answer.await.unwrap().unwrap();
    }

    let (syncs, records) = spool.syncs();
    assert_eq!(records, 50);
    assert!(syncs <= 2, "{syncs} fsyncs for 50 appends");
    assert_eq!(spool.read(0, 100).unwrap().len(), 50);
}

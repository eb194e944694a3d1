//! The writer of a segmented download (segmented.rs): bytes of several connections arrive for
//! their segments, each goes to its place in the temp file, and the digest and the catalog's
//! observer still see the file once and in order. Bytes that arrive at the front of what is
//! hashed are hashed from memory on the way to the disk; bytes further on are written ahead,
//! written back soon (so they never pile up as dirty pages), and read back from the page cache
//! when the front reaches them. Nothing goes over the network twice.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::checksum::Hasher;
use crate::catalog::{Observed, Observer};

/// Segments are at least this long: below it, another connection costs more in requests than
/// it gains.
pub const MIN_SEGMENT: u64 = 1 << 20;

/// Bytes written ahead of the front in one segment that start their writeback.
const KICK_BYTES: u64 = 8 << 20;

/// Bytes read back and hashed between two looks at the incoming pieces.
const CATCH_UP: u64 = 4 << 20;

/// One segment of the file as the resume state records it: `[start, end)` and how many of its
/// leading bytes are on disk for good.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentState {
    pub start: u64,
    pub end: u64,
    pub synced: u64,
}

/// Splits `total` bytes into at most `connections` segments of at least [`MIN_SEGMENT`].
pub fn split(total: u64, connections: u32) -> Vec<SegmentState> {
    let n = (total / MIN_SEGMENT).clamp(1, u64::from(connections.max(1)));
    let size = total.div_ceil(n);
    (0..n)
        .map(|i| SegmentState {
            start: i * size,
            end: ((i + 1) * size).min(total),
            synced: 0,
        })
        .filter(|s| s.start < s.end)
        .collect()
}

/// Leading bytes of the file that the segments hold without a gap, by `done(i)`.
pub fn prefix(segments: &[SegmentState], done: impl Fn(usize) -> u64) -> u64 {
    let mut order: Vec<usize> = (0..segments.len()).collect();
    order.sort_by_key(|&i| segments[i].start);
    let mut front = 0;
    for i in order {
        let s = &segments[i];
        if s.start != front {
            break;
        }
        front = s.start + done(i).min(s.end - s.start);
        if front < s.end {
            break;
        }
    }
    front
}

/// Bytes of a piece for segment `segment`.
pub struct Piece {
    pub segment: usize,
    pub bytes: Bytes,
}

/// The writer's progress, shared with the syncer (which makes it durable) and the transfer
/// (which records it and splits segments).
pub struct Counters {
    /// The segments in the order they were made (a split adds one at the end), with the bytes
    /// written into each in `synced`.
    written: Mutex<Vec<SegmentState>>,
    /// The segments as of the last checkpoint, with their bytes on disk for good.
    synced: Mutex<Vec<SegmentState>>,
}

impl Counters {
    pub fn new(segments: &[SegmentState]) -> Counters {
        Counters {
            written: Mutex::new(segments.to_vec()),
            synced: Mutex::new(segments.to_vec()),
        }
    }

    /// The segments with the bytes written into each so far.
    pub fn current(&self) -> Vec<SegmentState> {
        self.written.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// After a sync of the file: `current` (taken before it) is on disk for good.
    pub fn publish_synced(&self, current: Vec<SegmentState>) {
        if let Ok(mut synced) = self.synced.lock() {
            *synced = current;
        }
    }

    /// The segments as the resume state records them.
    pub fn synced(&self) -> Vec<SegmentState> {
        self.synced.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Ends segment `i` at `at` and makes the rest of it a new segment, whose index is
    /// returned. Nothing of segment `i` may have been sent past `at`.
    pub fn split(&self, i: usize, at: u64) -> Option<usize> {
        let mut segments = self.written.lock().ok()?;
        let s = segments.get_mut(i)?;
        if at <= s.start + s.synced || at >= s.end {
            return None;
        }
        let rest = SegmentState {
            start: at,
            end: s.end,
            synced: 0,
        };
        s.end = at;
        segments.push(rest);
        Some(segments.len() - 1)
    }

    /// Segment `i`: its start, its end and the bytes written into it.
    fn span(&self, i: usize) -> Option<(u64, u64, u64)> {
        let segments = self.written.lock().ok()?;
        segments.get(i).map(|s| (s.start, s.end, s.synced))
    }

    fn add_written(&self, i: usize, n: u64) {
        if let Ok(mut segments) = self.written.lock()
            && let Some(s) = segments.get_mut(i)
        {
            s.synced += n;
        }
    }

    /// The segment that starts at `at`.
    fn starting_at(&self, at: u64) -> Option<usize> {
        let segments = self.written.lock().ok()?;
        segments.iter().position(|s| s.start == at && s.end > at)
    }

    /// The segment that holds byte `at`.
    fn holding(&self, at: u64) -> Option<usize> {
        let segments = self.written.lock().ok()?;
        segments.iter().position(|s| s.start <= at && at < s.end)
    }

    /// The file's length: the end of the last segment.
    fn total(&self) -> u64 {
        let segments = self.written.lock().map(|s| s.clone()).unwrap_or_default();
        segments.iter().map(|s| s.end).max().unwrap_or(0)
    }
}

/// The digest and the observer, fed in file order.
pub struct Ordered {
    pub hasher: Option<Hasher>,
    pub observer: Observer,
}

impl Ordered {
    fn feed(&mut self, data: &[u8]) {
        if let Some(h) = self.hasher.as_mut() {
            h.update(data);
        }
        self.observer.update(data);
    }
}

/// The writer thread's state: where the hashed front is and in which segment.
struct Writer<'a> {
    file: &'a File,
    counters: &'a Counters,
    /// The front (every byte before it is written and hashed), shared with the syncer.
    front: &'a AtomicU64,
    ordered: Ordered,
    at: u64,
    segment: usize,
    /// Per segment: bytes from its start whose writeback was started.
    kicked: Vec<u64>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    fn write(&mut self, piece: &Piece) -> io::Result<()> {
        let i = piece.segment;
        let Some((start, end, done)) = self.counters.span(i) else {
            return Err(io::Error::other(format!("no segment {i}")));
        };
        let pos = start + done;
        let len = piece.bytes.len() as u64;
        if pos + len > end {
            return Err(io::Error::other(format!(
                "segment {i} overrun: {len} bytes at {pos}, segment ends at {end}"
            )));
        }
        self.file.write_all_at(&piece.bytes, pos)?;
        self.counters.add_written(i, len);
        if i == self.segment && pos == self.at {
            self.ordered.feed(&piece.bytes);
            self.advance(len);
            return Ok(());
        }
        if self.kicked.len() <= i {
            self.kicked.resize(i + 1, 0);
        }
        if done + len >= self.kicked[i] + KICK_BYTES {
            super::pipeline::start_writeback(
                self.file,
                start + self.kicked[i],
                done + len - self.kicked[i],
            );
            self.kicked[i] = done + len;
        }
        Ok(())
    }

    /// Moves the front past `n` hashed bytes, into the segment that follows at the end of one.
    fn advance(&mut self, n: u64) {
        self.at += n;
        self.front.store(self.at, Ordering::Release);
        let end = self.counters.span(self.segment).map_or(0, |s| s.1);
        if self.at == end
            && let Some(next) = self.counters.starting_at(self.at)
        {
            self.segment = next;
        }
    }

    /// Bytes written ahead that wait at the front.
    fn waiting(&self) -> u64 {
        self.counters
            .span(self.segment)
            .map_or(0, |(start, _, done)| (start + done).saturating_sub(self.at))
    }

    /// Reads back and hashes up to `budget` bytes written ahead of the front.
    fn catch_up(&mut self, mut budget: u64) -> io::Result<()> {
        while budget > 0 {
            let n = self.waiting().min(budget).min(self.buf.len() as u64) as usize;
            if n == 0 {
                break;
            }
            self.file.read_exact_at(&mut self.buf[..n], self.at)?;
            self.ordered.feed(&self.buf[..n]);
            self.advance(n as u64);
            budget -= n as u64;
        }
        Ok(())
    }
}

/// Takes pieces until the sender is dropped, then hashes what is left. Returns the digest
/// state and the observer's facts; fails when a write fails or, unless `abandoned()` says
/// the bytes are thrown away, when the segments do not make up the whole file.
pub fn run(
    mut rx: mpsc::Receiver<Piece>,
    file: &File,
    counters: &Counters,
    front: &AtomicU64,
    ordered: Ordered,
    abandoned: impl Fn() -> bool,
) -> io::Result<(Option<Hasher>, Observed)> {
    let total = counters.total();
    // The caller has hashed the leading bytes already there.
    let at = front.load(Ordering::Acquire);
    let segment = match counters.holding(at) {
        Some(i) => i,
        None if at == total && total > 0 => counters.holding(at - 1).unwrap_or(0),
        None => return Err(io::Error::other(format!("no segment holds byte {at}"))),
    };
    let mut w = Writer {
        file,
        counters,
        front,
        ordered,
        at,
        segment,
        kicked: counters.current().iter().map(|s| s.synced).collect(),
        buf: vec![0; 1 << 20],
    };
    loop {
        let piece = if w.waiting() > 0 {
            match rx.try_recv() {
                Ok(p) => Some(p),
                Err(mpsc::error::TryRecvError::Empty) => None,
                Err(mpsc::error::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(p) => Some(p),
                None => break,
            }
        };
        if let Some(p) = piece {
            w.write(&p)?;
        }
        w.catch_up(CATCH_UP)?;
    }
    if abandoned() {
        return Ok((w.ordered.hasher, w.ordered.observer.finish()));
    }
    w.catch_up(u64::MAX)?;
    if w.at != total {
        return Err(io::Error::other(format!(
            "the segments hold {} of {total} bytes",
            w.at
        )));
    }
    Ok((w.ordered.hasher, w.ordered.observer.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn split_into_segments() {
        assert_eq!(split(10, 4).len(), 1, "below two minimum segments: one");
        let s = split(10 * MIN_SEGMENT + 3, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0].start, 0);
        assert_eq!(s[3].end, 10 * MIN_SEGMENT + 3);
        assert!(s.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(split(3 * MIN_SEGMENT, 16).len(), 3);
        assert_eq!(split(0, 4).len(), 0);
    }

    #[test]
    fn prefix_stops_at_the_first_gap() {
        let s = split(4 * MIN_SEGMENT, 4);
        let m = MIN_SEGMENT;
        assert_eq!(prefix(&s, |_| 0), 0);
        assert_eq!(prefix(&s, |i| [m, 5, m, 0][i]), m + 5);
        assert_eq!(prefix(&s, |i| [m, m, 7, m][i]), 2 * m + 7);
        assert_eq!(prefix(&s, |_| m), 4 * m);
    }

    /// Pieces arriving out of order, some segments resumed with bytes already on disk: the
    /// file and its digest are those of the whole body, and the front ends at its length.
    #[test]
    fn pieces_out_of_order_give_the_ordered_digest() {
        let body: Vec<u8> = (0..(5 * MIN_SEGMENT + 12_345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut segments = split(body.len() as u64, 4);
        // Resumed: segment 2 has 1000 bytes on disk already.
        let file = tempfile::tempfile().unwrap();
        let s2 = &mut segments[2];
        file.write_all_at(&body[s2.start as usize..s2.start as usize + 1000], s2.start)
            .unwrap();
        s2.synced = 1000;
        let counters = Counters::new(&segments);
        let front = AtomicU64::new(0);
        let (tx, rx) = mpsc::channel(1024);
        // Round robin in 64 KiB pieces, the last segment first.
        let mut cursor: Vec<u64> = segments.iter().map(|s| s.start + s.synced).collect();
        let mut order = (0..segments.len()).rev().cycle();
        while cursor.iter().zip(&segments).any(|(c, s)| *c < s.end) {
            let i = order.next().unwrap();
            let (c, end) = (cursor[i], segments[i].end);
            if c == end {
                continue;
            }
            let n = (end - c).min(65_536);
            let bytes = Bytes::copy_from_slice(&body[c as usize..(c + n) as usize]);
            tx.try_send(Piece { segment: i, bytes }).unwrap();
            cursor[i] += n;
        }
        drop(tx);
        let ordered = Ordered {
            hasher: Some(Hasher::new(crate::download::Algorithm::Sha256)),
            observer: Observer::new(false),
        };
        let (hasher, observed) = run(rx, &file, &counters, &front, ordered, || false).unwrap();
        let expected = hex(&sha2::Sha256::digest(&body));
        assert_eq!(hasher.unwrap().finish_hex(), expected);
        assert_eq!(observed.sha256, expected);
        assert_eq!(front.load(Ordering::Acquire), body.len() as u64);
        let mut back = vec![0; body.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert!(back == body, "file differs from the body");
    }

    /// A segment split in two: the front goes from its first half to the new segment (made
    /// last, but next in the file), then on to the segment after.
    #[test]
    fn a_split_segment_is_hashed_in_file_order() {
        let m = MIN_SEGMENT as usize;
        let body: Vec<u8> = (0..6 * m).map(|i| (i * 13 % 241) as u8).collect();
        let counters = Counters::new(&split(body.len() as u64, 2));
        assert_eq!(counters.split(0, 2 * MIN_SEGMENT), Some(2));
        assert_eq!(counters.split(0, 0), None, "not before its bytes");
        assert_eq!(counters.split(1, 9 * MIN_SEGMENT), None, "not past its end");
        let file = tempfile::tempfile().unwrap();
        let front = AtomicU64::new(0);
        let (tx, rx) = mpsc::channel(64);
        for (segment, range) in [(1, 3 * m..6 * m), (2, 2 * m..3 * m), (0, 0..2 * m)] {
            for c in body[range].chunks(100_000) {
                let bytes = Bytes::copy_from_slice(c);
                tx.try_send(Piece { segment, bytes }).unwrap();
            }
        }
        drop(tx);
        let ordered = Ordered {
            hasher: None,
            observer: Observer::new(false),
        };
        let (_, observed) = run(rx, &file, &counters, &front, ordered, || false).unwrap();
        assert_eq!(observed.sha256, hex(&sha2::Sha256::digest(&body)));
        let ends: Vec<(u64, u64)> = counters
            .current()
            .iter()
            .map(|s| (s.start, s.end))
            .collect();
        let mb = MIN_SEGMENT;
        assert_eq!(ends, [(0, 2 * mb), (3 * mb, 6 * mb), (2 * mb, 3 * mb)]);
        assert_eq!(
            prefix(&counters.current(), |i| counters.current()[i].synced),
            6 * mb
        );
    }

    #[test]
    fn a_missing_segment_is_an_error_and_an_overrun_too() {
        let segments = split(4 * MIN_SEGMENT, 2);
        let file = tempfile::tempfile().unwrap();
        let (counters, front) = (Counters::new(&segments), AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(4);
        let ordered = || Ordered {
            hasher: None,
            observer: Observer::new(false),
        };
        let piece = |segment, n| Piece {
            segment,
            bytes: Bytes::from(vec![1u8; n]),
        };
        tx.try_send(piece(0, 2 * MIN_SEGMENT as usize)).unwrap();
        drop(tx);
        let Err(e) = run(rx, &file, &counters, &front, ordered(), || false) else {
            panic!("no error");
        };
        assert!(
            e.to_string().contains("hold 2097152 of 4194304 bytes"),
            "{e}"
        );

        let (counters, front) = (Counters::new(&segments), AtomicU64::new(0));
        let (tx, rx) = mpsc::channel(4);
        tx.try_send(piece(1, 2 * MIN_SEGMENT as usize + 1)).unwrap();
        drop(tx);
        let Err(e) = run(rx, &file, &counters, &front, ordered(), || false) else {
            panic!("no error");
        };
        assert!(e.to_string().contains("segment 1 overrun"), "{e}");
    }

    fn hex(d: &[u8]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}

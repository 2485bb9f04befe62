//! Where log lines go: the thread that logs a line copies it into a shared queue, and a thread
//! of its own writes the queue to stdout in batches.
//!
//! A logging thread makes no system call in the common case: it appends its line under a lock,
//! and wakes the writer only when the writer sleeps with nothing queued. The writer then
//! gathers lines for [`Limits::gather`] (or until [`Limits::batch_bytes`] are queued) and writes
//! them in one call. Once [`Limits::queued_bytes`] are queued (stdout stalled, say a stuck
//! node logging agent), a logging thread waits for room: no line is dropped while running.
//! Dropping the guard gives the writer [`Limits::drain`] to write the queue out; lines logged
//! after that are written by the thread that logs them, or, if stdout is still stuck, queued
//! without a bound (an exit does not wait on them).
//!
//! (tracing-appender's worker, used before, took lines from a channel one at a time: under
//! 10,000 lines a second it yielded and woke between them, 0.75 system calls per line, and
//! spent a third of what the ingress costs over a bare bridge.)

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The writer thread's batching and the queue's bound.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// How long the writer gathers lines after the first one before it writes.
    pub gather: Duration,
    /// Queued bytes that make the writer write without waiting out `gather`.
    pub batch_bytes: usize,
    /// Queued bytes at which a logging thread waits for the writer.
    pub queued_bytes: usize,
    /// How long dropping the guard waits for the queue to be written.
    pub drain: Duration,
}

impl Limits {
    pub(crate) const STDOUT: Self = Self {
        gather: Duration::from_millis(10),
        batch_bytes: 64 * 1024,
        queued_bytes: 4 * 1024 * 1024,
        drain: Duration::from_secs(1),
    };
}

/// What the writer thread is doing, as the logging threads see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Asleep until a line is queued.
    Idle,
    /// Woken by a logging thread (which is the only one to wake it).
    Woken,
    /// Waiting out `gather`.
    Gathering,
    /// Writing a batch; it looks at the queue again when done.
    Writing,
    /// Gone: lines are written by the thread that logs them.
    Stopped,
}

#[derive(Debug)]
struct State {
    queued: Vec<u8>,
    writer: Writer,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here: for a line, or out the gathering time.
    wake_writer: Condvar,
    /// Logging threads wait here for room; the guard for the writer to stop.
    room: Condvar,
    sink: Mutex<Box<dyn Write + Send>>,
    limits: Limits,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The [`MakeWriter`] that queues each line for the writer thread.
#[derive(Debug, Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes out the queue (waiting up to
/// [`Limits::drain`]) and stops the thread.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub(crate) struct LogWriterGuard {
    shared: Arc<Shared>,
}

/// Starts the writer thread over `sink`. If no thread can be started, lines are written by
/// the threads that log them. Writing to `sink` must not log (it would wait on itself).
pub(crate) fn spawn(
    sink: impl Write + Send + 'static,
    limits: Limits,
) -> (LogWriter, LogWriterGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queued: Vec::new(),
            writer: Writer::Idle,
            closing: false,
        }),
        wake_writer: Condvar::new(),
        room: Condvar::new(),
        sink: Mutex::new(Box::new(sink)),
        limits,
    });
    let thread_shared = Arc::clone(&shared);
    let spawned = thread::Builder::new()
        .name("log-writer".to_owned())
        .spawn(move || thread_shared.run());
    if spawned.is_err() {
        shared.lock().writer = Writer::Stopped;
    }
    let guard = LogWriterGuard {
        shared: Arc::clone(&shared),
    };
    (LogWriter { shared }, guard)
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut state = self.lock();
        // Past the guard's drop the bound is off: an exit never waits on a stuck stdout for
        // longer than the drain.
        while state.writer != Writer::Stopped
            && !state.closing
            && state.queued.len() >= self.limits.queued_bytes
        {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.writer == Writer::Stopped {
            drop(state);
            self.write_out(line);
            return;
        }
        state.queued.extend_from_slice(line);
        let wake = match state.writer {
            Writer::Idle => true,
            Writer::Gathering => state.queued.len() >= self.limits.batch_bytes,
            Writer::Woken | Writer::Writing | Writer::Stopped => false,
        };
        if wake {
            state.writer = Writer::Woken;
            drop(state);
            self.wake_writer.notify_one();
        }
    }

    /// The writer thread.
    fn run(&self) {
        let mut batch = Vec::new();
        let mut state = self.lock();
        loop {
            state.writer = Writer::Idle;
            state = self
                .wake_writer
                .wait_while(state, |s| s.queued.is_empty() && !s.closing)
                .unwrap_or_else(PoisonError::into_inner);
            if !state.closing && state.queued.len() < self.limits.batch_bytes {
                state.writer = Writer::Gathering;
                state = self
                    .wake_writer
                    .wait_timeout_while(state, self.limits.gather, |s| {
                        s.writer == Writer::Gathering && !s.closing
                    })
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            if state.closing && state.queued.is_empty() {
                state.writer = Writer::Stopped;
                drop(state);
                self.room.notify_all();
                return;
            }
            state.writer = Writer::Writing;
            std::mem::swap(&mut state.queued, &mut batch);
            drop(state);
            // A logging thread waits only on a full queue, and the queue only empties here.
            if batch.len() >= self.limits.queued_bytes {
                self.room.notify_all();
            }
            self.write_out(&batch);
            batch.clear();
            // What a stall queued is not kept for good.
            batch.shrink_to(self.limits.batch_bytes);
            state = self.lock();
        }
    }

    fn write_out(&self, bytes: &[u8]) {
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // Nowhere to report a failed write to: the lines are lost, the service goes on.
        let _ = sink.write_all(bytes).and_then(|()| sink.flush());
    }
}

/// One line's writer: the logging layer writes each formatted line in one call.
#[derive(Debug)]
pub(crate) struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Line(&self.shared)
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.wake_writer.notify_one();
        // Loggers waiting for room go on: the bound is off from here.
        self.shared.room.notify_all();
        let _ = self
            .shared
            .room
            .wait_timeout_while(state, self.shared.limits.drain, |s| {
                s.writer != Writer::Stopped
            });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    /// A sink that keeps what it is given and counts its writes; while `stalled` is set, a
    /// write waits.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        writes: Arc<AtomicUsize>,
        stalled: Arc<(Mutex<bool>, Condvar)>,
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let (stalled, released) = &*self.stalled;
            drop(
                released
                    .wait_while(stalled.lock().unwrap(), |s| *s)
                    .unwrap(),
            );
            self.bytes.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
        }

        fn stall(&self, on: bool) {
            *self.stalled.0.lock().unwrap() = on;
            self.stalled.1.notify_all();
        }
    }

    fn limits(queued_bytes: usize) -> Limits {
        Limits {
            gather: Duration::from_millis(1),
            batch_bytes: queued_bytes / 4,
            queued_bytes,
            drain: Duration::from_secs(10),
        }
    }

    fn log(writer: &LogWriter, line: &str) {
        writer.make_writer().write_all(line.as_bytes()).unwrap();
    }

    /// Each thread's lines `t{thread} {n}`, 0 to `count`, in order, and nothing else.
    fn assert_every_line(text: &str, threads: usize, count: usize) {
        let mut next = vec![0; threads];
        for line in text.lines() {
            let (thread, n) = line.strip_prefix('t').unwrap().split_once(' ').unwrap();
            let (thread, n): (usize, usize) = (thread.parse().unwrap(), n.parse().unwrap());
            assert_eq!(n, next[thread], "thread {thread}'s lines out of order");
            next[thread] += 1;
        }
        assert_eq!(next, vec![count; threads]);
    }

    /// Polls `done` for up to 10 s.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "not within 10 s: {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn lines_from_many_threads_all_arrive_whole_in_order_and_batched() {
        let sink = Sink::default();
        // A 4 KiB queue against 8 threads: they wait for room again and again.
        let (writer, guard) = spawn(sink.clone(), limits(4096));
        let (threads, count) = (8, 20_000);
        thread::scope(|scope| {
            for thread in 0..threads {
                let writer = &writer;
                scope.spawn(move || {
                    for n in 0..count {
                        log(writer, &format!("t{thread} {n}\n"));
                    }
                });
            }
        });
        drop(guard);
        let text = sink.text();
        assert_every_line(&text, threads, count);
        let writes = sink.writes.load(Ordering::SeqCst);
        assert!(
            writes * 20 < threads * count,
            "{writes} writes for {} lines",
            threads * count
        );
    }

    #[test]
    fn a_stalled_sink_makes_a_logging_thread_wait_then_loses_nothing() {
        let sink = Sink::default();
        sink.stall(true);
        let (writer, guard) = spawn(sink.clone(), limits(2048));
        let appended = Arc::new(AtomicUsize::new(0));
        let line = format!("{}\n", "x".repeat(99));
        let logger = {
            let (writer, appended, line) = (writer.clone(), Arc::clone(&appended), line.clone());
            thread::spawn(move || {
                for _ in 0..1000 {
                    log(&writer, &line);
                    appended.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Until the logging thread can get no further: the writer holds one batch in the
        // stalled write, the queue is full behind it.
        eventually("the queue fills behind the stalled write", || {
            sink.writes.load(Ordering::SeqCst) == 1 && writer.shared.lock().queued.len() >= 2048
        });
        thread::sleep(Duration::from_millis(100));
        let seen = appended.load(Ordering::SeqCst);
        assert!(!logger.is_finished());
        assert_eq!(sink.writes.load(Ordering::SeqCst), 1);
        // The stalled batch, at most a full queue (with one line over) behind it.
        assert!(seen * 100 <= 2 * (2048 + 100), "{seen} lines taken in");
        sink.stall(false);
        logger.join().unwrap();
        drop(guard);
        assert_eq!(sink.text(), line.repeat(1000));
    }

    #[test]
    fn a_line_wakes_an_idle_writer_and_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(sink.clone(), Limits::STDOUT);
        for n in 0..2 {
            // The second time, the writer has long gone idle.
            thread::sleep(Duration::from_millis(50));
            log(&writer, &format!("t0 {n}\n"));
            eventually("the line is written", || sink.text().lines().count() > n);
            assert_every_line(&sink.text(), 1, n + 1);
        }
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_out_the_gathering_time() {
        let sink = Sink::default();
        let (writer, _guard) = spawn(
            sink.clone(),
            Limits {
                gather: Duration::from_secs(3600),
                batch_bytes: 1000,
                ..limits(1 << 20)
            },
        );
        // The first line starts the gathering; the writer is past it once it gathers.
        log(&writer, "t0 0\n");
        eventually("the writer gathers", || {
            writer.shared.lock().writer == Writer::Gathering
        });
        for n in 1..=250 {
            log(&writer, &format!("t0 {n}\n"));
        }
        // The lines past the batch wait out the gathering time; the batch does not.
        eventually("a batch is written", || sink.text().len() >= 1000);
        let text = sink.text();
        assert_every_line(&text, 1, text.lines().count());
    }

    #[test]
    fn after_a_drain_that_times_out_logging_does_not_wait_and_nothing_is_lost() {
        let sink = Sink::default();
        sink.stall(true);
        let (writer, guard) = spawn(
            sink.clone(),
            Limits {
                drain: Duration::from_millis(100),
                ..limits(2048)
            },
        );
        let line = format!("{}\n", "x".repeat(99));
        let logger = {
            let (writer, line) = (writer.clone(), line.clone());
            thread::spawn(move || {
                for _ in 0..1000 {
                    log(&writer, &line);
                }
            })
        };
        eventually("the queue fills behind the stalled write", || {
            writer.shared.lock().queued.len() >= 2048
        });
        // The drain runs out on the stuck sink; the logger, waiting for room, goes on.
        drop(guard);
        eventually("the logger finishes", || logger.is_finished());
        sink.stall(false);
        eventually("every line is written", || sink.text().len() == 1000 * 100);
        assert_eq!(sink.text(), line.repeat(1000));
    }

    #[test]
    fn dropping_the_guard_writes_the_queue_and_later_lines_go_straight_out() {
        let sink = Sink::default();
        let (writer, guard) = spawn(
            sink.clone(),
            Limits {
                gather: Duration::from_secs(3600),
                ..limits(1 << 20)
            },
        );
        for n in 0..3 {
            log(&writer, &format!("t0 {n}\n"));
        }
        drop(guard);
        assert_every_line(&sink.text(), 1, 3);
        log(&writer, "t0 3\n");
        assert_every_line(&sink.text(), 1, 4);
    }
}

//! Commands through the engine from one thread with `Engine::submit_with`, in two shapes:
//! [`windowed`], a fixed number in flight (the shape of that many clients each waiting for
//! its answer before sending the next: 32 for the 32 connections the PostgreSQL side holds),
//! and [`batched`], a Redis pipeline's shape (send a batch, wait for all its answers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use dispatch_core::{Actor, Command, Engine, Error, Outcome};

/// What a windowed run gave back.
pub struct Windowed {
    /// Each command's answer, in submission order.
    pub results: Vec<Result<Outcome, Error>>,
    /// Each command's latency, submit → answer (the answer comes once the command is
    /// durable, location updates excepted), in submission order.
    pub latencies: Vec<Duration>,
    /// From the first submit to the last answer.
    pub elapsed: Duration,
}

type Answer = (usize, Duration, Result<Outcome, Error>);

/// Submits `commands` keeping at most `window` unanswered. `window` must be below the
/// engine's queue capacity (this is then the only thread submitting, so the queue never
/// fills and no command is refused `Overloaded`).
pub fn windowed(engine: &Engine, commands: Vec<(Actor, Command)>, window: usize) -> Windowed {
    assert!(window >= 1 && window < engine.queue_capacity(), "window {window} out of range");
    let n = commands.len();
    let mut results: Vec<Option<Result<Outcome, Error>>> = (0..n).map(|_| None).collect();
    let mut latencies = vec![Duration::ZERO; n];
    let (tx, rx) = mpsc::channel::<Answer>();
    let mut record = |(i, latency, result): Answer| {
        latencies[i] = latency;
        results[i] = Some(result);
    };
    let mut in_flight = 0usize;
    let start = Instant::now();
    for (i, (actor, command)) in commands.into_iter().enumerate() {
        if in_flight == window {
            record(rx.recv().expect("the engine answers every command"));
            in_flight -= 1;
        }
        let (reply, sent) = (tx.clone(), Instant::now());
        match engine.submit_with(actor, command, move |r| drop(reply.send((i, sent.elapsed(), r)))) {
            Ok(()) => in_flight += 1,
            Err(e) => record((i, sent.elapsed(), Err(e))),
        }
    }
    for _ in 0..in_flight {
        record(rx.recv().expect("the engine answers every command"));
    }
    let elapsed = start.elapsed();
    let results = results.into_iter().map(|r| r.expect("every command answered")).collect();
    Windowed { results, latencies, elapsed }
}

/// Submits `commands` in batches of `batch`, waiting for every answer of a batch before
/// sending the next: a Redis pipeline's shape (send N, read N answers). Answers only count
/// down, and the last of a batch wakes the submitter: one wake-up per batch, as one socket
/// read serves a pipeline's answers, instead of one per command. Returns the number of
/// refused commands and the elapsed time.
pub fn batched(engine: &Engine, commands: Vec<(Actor, Command)>, batch: usize) -> (usize, Duration) {
    assert!(batch >= 1 && batch < engine.queue_capacity(), "batch {batch} out of range");
    let refused = Arc::new(AtomicUsize::new(0));
    let mut commands = commands.into_iter().peekable();
    let start = Instant::now();
    while commands.peek().is_some() {
        let chunk: Vec<_> = commands.by_ref().take(batch).collect();
        let left = Arc::new(AtomicUsize::new(chunk.len()));
        let (done_tx, done_rx) = mpsc::sync_channel::<()>(1);
        for (actor, command) in chunk {
            let (to_go, refusals, done) = (Arc::clone(&left), Arc::clone(&refused), done_tx.clone());
            let reply = move |r: Result<Outcome, Error>| {
                if r.is_err() {
                    refusals.fetch_add(1, Ordering::Relaxed);
                }
                if to_go.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let _ = done.send(());
                }
            };
            if engine.submit_with(actor, command, reply).is_err() {
                refused.fetch_add(1, Ordering::Relaxed);
                if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let _ = done_tx.send(());
                }
            }
        }
        done_rx.recv().expect("the last answer of a batch signals");
    }
    (refused.load(Ordering::Relaxed), start.elapsed())
}

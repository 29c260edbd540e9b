//! Commands through the engine from one thread, in two shapes: [`windowed`]
//! (`Engine::submit_with`), a fixed number in flight (the shape of that many clients each
//! waiting for its answer before sending the next: 32 for the 32 connections the
//! PostgreSQL side holds), and [`batched`] (`Engine::submit_many_with`), a Redis
//! pipeline's shape (send a batch as one message, wait for all its answers).

use std::sync::mpsc;
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
/// sending the next: a Redis pipeline's shape (send N, read N answers). Each batch goes
/// as one message (`Engine::submit_many_with`) and comes back as one answer, as a
/// pipeline is one write of N commands and one read of N replies. Returns the number of
/// refused commands and the elapsed time.
pub fn batched(engine: &Engine, commands: Vec<(Actor, Command)>, batch: usize) -> (usize, Duration) {
    assert!((1..=dispatch_core::engine::MAX_SUBMIT_MANY).contains(&batch), "batch {batch} out of range");
    let mut refused = 0;
    let mut commands = commands.into_iter().peekable();
    let start = Instant::now();
    while commands.peek().is_some() {
        let chunk: Vec<_> = commands.by_ref().take(batch).collect();
        let n = chunk.len();
        let (done_tx, done_rx) = mpsc::sync_channel::<usize>(1);
        let sent = engine.submit_many_with(chunk, move |answers: Vec<Result<Outcome, Error>>| {
            let _ = done_tx.send(answers.iter().filter(|a| a.is_err()).count());
        });
        refused += match sent {
            Ok(()) => done_rx.recv().expect("every batch is answered"),
            Err(_) => n,
        };
    }
    (refused, start.elapsed())
}

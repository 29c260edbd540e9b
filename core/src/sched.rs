//! The CPU scheduling of the engine's background threads.
//!
//! Owns nothing but the calling thread's scheduling policy. Guarantees: on Linux the
//! checkpoint and position-tracker threads run under `SCHED_IDLE`, so that on a machine with
//! as many busy threads as cores the writer (whose every pause delays every caller) is never
//! descheduled for them: a normal thread always preempts them. They use whatever CPU the
//! rest leaves, which on a saturated machine spaces checkpoints out (the next one waits for
//! the last to finish; the WAL holds everything meanwhile) and never loses one.
//!
//! Measured (`cargo bench --bench durability -- accepts`, open loop at 20,000 accepts/s
//! across 5-7 checkpoints, this project's 2-core VM): both threads at normal priority, p99
//! 5.4-5.5 ms; under `SCHED_IDLE` (set from a shell with `chrt --idle`, runs alternating),
//! 3.6-4.6 ms over five runs; at nice 19 instead, 4.4-6.8 ms (a nice-19 thread still gets a
//! slice when it wakes).

/// Puts the calling thread under `SCHED_IDLE` where the platform has it (Linux). Best
/// effort: a refusal leaves the thread as it was.
pub(crate) fn lower_this_thread() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let _ = set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The thread that asks runs under `SCHED_IDLE` afterwards (any user may lower its own
    /// thread), and no other thread is touched.
    #[test]
    fn the_calling_thread_goes_idle_and_no_other() {
        use thread_priority::unix::{NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let before = thread_schedule_policy().unwrap();
        let lowered = std::thread::spawn(|| {
            super::lower_this_thread();
            thread_schedule_policy().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, idle);
        assert_eq!(thread_schedule_policy().unwrap(), before);
        assert_ne!(before, idle);
    }
}

//! The process's memory settings that are not the allocator's choice: transparent huge
//! pages (THP).
//!
//! Why: with THP, the first write to each new 2 MiB of heap makes the kernel zero the
//! whole huge page at once, in whatever thread touched it — a request's task, the writer.
//! mimalloc (the binary's allocator) asks for huge pages on its arenas (`madvise`), so on
//! a kernel set to `madvise` (the common default) as on one set to `always`, a burst of
//! requests that grows the heap waits behind those zeroings: 200 HTTP accepts at once took
//! p99 9-28 ms with THP and 7-15 ms without, alternating in the same minutes (BENCHMARKS.md,
//! "HTTP accept and fan-out", round five). Redis turns THP off for its process for the
//! same reason.
//!
//! Guarantees: [`transparent_huge_pages`] with `false` (the default of `[server]
//! transparent_huge_pages`) disables THP for the whole process (`prctl(PR_SET_THP_DISABLE)`,
//! which overrides `madvise` and the system's `always`, and is inherited by children)
//! before the engine allocates its state; with `true` it leaves the system's setting. It
//! never fails start-up: a kernel that refuses is logged and the process goes on.

/// What the process runs with after [`transparent_huge_pages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HugePages {
    /// THP off for this process.
    Disabled,
    /// The system's setting, as configured (`transparent_huge_pages = true`).
    System,
    /// Asked to disable them, but the platform has no such switch or refused it.
    Unchanged,
}

/// Disables transparent huge pages for this process unless `allow`. Call it first thing,
/// before large allocations: memory already backed by huge pages stays so.
pub fn transparent_huge_pages(allow: bool) -> HugePages {
    if allow {
        return HugePages::System;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match rustix::thread::disable_transparent_huge_pages(true) {
            Ok(()) => HugePages::Disabled,
            Err(e) => {
                tracing::warn!(error = %e, "could not disable transparent huge pages for the process");
                HugePages::Unchanged
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    HugePages::Unchanged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowing_leaves_the_system_setting() {
        assert_eq!(transparent_huge_pages(true), HugePages::System);
    }

    /// Disabling takes effect for the process, as the kernel reports it back. (The flag is
    /// the process's: the test binary's other tests are not affected in what they assert.)
    #[cfg(target_os = "linux")]
    #[test]
    fn disabling_is_what_the_kernel_reports() {
        assert_eq!(transparent_huge_pages(false), HugePages::Disabled);
        assert_eq!(rustix::thread::transparent_huge_pages_are_disabled().ok(), Some(true));
    }
}

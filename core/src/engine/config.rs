//! How an engine is set up: [`EngineConfig`], its bounds and its defaults.
//!
//! Owns the knobs of the runtime (queue and batch bounds, the clock and the id source,
//! the data directory, checkpoint cadence, read-only retries). Guarantees: the defaults
//! are production's (the system clock, ids seeded from the operating system's entropy);
//! `Engine::open` refuses a zero queue or batch bound and rules that do not validate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::command::DispatchRules;
use crate::id::{IdSource, RandomIds};
use crate::journal::{LogOpener, LogWrapper};
use crate::leadership::Leadership;

/// The default of [`EngineConfig::positions_days`] (`[retention] positions_days`).
pub const DEFAULT_POSITIONS_DAYS: u32 = 30;
/// The default of [`EngineConfig::zone_queue_share_pct`] (`[limits] zone_queue_share_pct`).
pub const DEFAULT_ZONE_QUEUE_SHARE_PCT: u8 = 50;

/// How an engine is set up.
pub struct EngineConfig {
    /// The rules of dispatch (logged as a command when they differ from the state's).
    pub rules: DispatchRules,
    /// Commands the queue holds before callers are told `Overloaded`.
    pub queue_capacity: usize,
    /// Most commands applied and made durable together.
    pub max_batch: usize,
    /// How often an idle writer wakes to fire due deadlines.
    pub idle_wakeup: Duration,
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Where ids come from.
    pub ids: Box<dyn IdSource>,
    /// The data directory (WAL, checkpoint, history). `None`: in memory only,
    /// gone when the process ends.
    pub data_dir: Option<PathBuf>,
    /// In read-only mode, how often the writer tries writing again.
    pub read_only_retry: Duration,
    /// A checkpoint (a snapshot of the state, after which older WAL segments are
    /// deleted) is taken once this many records were logged since the last one.
    pub checkpoint_every_records: u64,
    /// Size of a WAL segment; the WAL is released below a checkpoint in whole segments.
    pub wal_segment_bytes: u64,
    /// Without a data dir (or with [`Engine::open_with_log`](super::Engine::open_with_log)), the log is
    /// checkpointed in memory: the state is cloned to become the rebuild base and
    /// the log below it is dropped. The clone costs time in proportion to the
    /// state (finished trips included, until they leave the hot state), so it is
    /// taken more rarely: the in-memory log holds at most about this many records.
    pub memory_checkpoint_every_records: u64,
    /// Wraps the data directory's WAL (a log that fails on demand, for tests of the
    /// whole server); `None` in production. Ignored without a data dir.
    pub wrap_log: Option<LogWrapper>,
    // ----- issue 20: P -----
    /// Days a driver's recorded positions are kept in the history (`[retention]
    /// positions_days`): older days are pruned in bounded batches by the position tracker.
    /// `None`: kept forever. Ignored without a data dir.
    pub positions_days: Option<u32>,
    /// The share of `queue_capacity`, in percent (1-100), that commands about one zone may
    /// hold at once (`[limits] zone_queue_share_pct`): one more is `Overloaded`, while
    /// other zones' commands and those without a zone are still taken.
    pub zone_queue_share_pct: u8,
    // ----- issue 21 -----
    /// The command log in place of the data directory's WAL: a log several nodes share
    /// (dispatch-cluster). Checkpoints and the history stay in the data directory. `None`:
    /// the WAL. Needs a data dir.
    pub log: Option<LogOpener>,
    /// Set for a node of a cluster: the engine starts as a follower (it applies what the
    /// shared log's leader commits and refuses commands with `Error::NotLeader`), and
    /// leads while the lease keeper grants it and its claim of the log holds. `None`: one
    /// node that always leads.
    pub leadership: Option<Arc<Leadership>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rules: DispatchRules::default(),
            queue_capacity: 65_536,
            max_batch: 4_096,
            idle_wakeup: Duration::from_millis(100),
            clock: Arc::new(SystemClock),
            ids: Box::new(RandomIds::from_seed(rand::random())),
            data_dir: None,
            read_only_retry: Duration::from_secs(1),
            checkpoint_every_records: 100_000,
            wal_segment_bytes: 64 * 1024 * 1024,
            memory_checkpoint_every_records: 1_000_000,
            wrap_log: None,
            positions_days: Some(DEFAULT_POSITIONS_DAYS),
            zone_queue_share_pct: DEFAULT_ZONE_QUEUE_SHARE_PCT,
            log: None,
            leadership: None,
        }
    }
}

impl EngineConfig {
    /// Uses `clock` for time (a [`crate::clock::ManualClock`] in tests).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `ids` for ids (a seeded [`RandomIds`] in tests).
    pub fn with_ids(mut self, ids: impl IdSource) -> Self {
        self.ids = Box::new(ids);
        self
    }

    /// Keeps the state durably in `dir` (created if missing).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Uses these dispatch rules.
    pub fn with_rules(mut self, rules: DispatchRules) -> Self {
        self.rules = rules;
        self
    }
}

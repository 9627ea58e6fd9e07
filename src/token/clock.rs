//! The time an actor reads: the system clock in production, a clock driven by tokio's
//! (pausable) timer in tests, so schedules and expiry are tested in milliseconds.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// Wall-clock time as an actor sees it. Timers still run on tokio's clock; a test clock must
/// move with it, or a timer would fire at a "now" that says it is not due yet.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;
}

/// Shared handle to a clock.
#[derive(Clone)]
pub struct SharedClock(Arc<dyn Clock>);

impl SharedClock {
    pub fn new(clock: impl Clock) -> Self {
        SharedClock(Arc::new(clock))
    }

    /// The system's wall clock.
    pub fn system() -> Self {
        SharedClock::new(SystemClock)
    }

    pub fn now(&self) -> SystemTime {
        self.0.now()
    }
}

impl Default for SharedClock {
    fn default() -> Self {
        SharedClock::system()
    }
}

impl fmt::Debug for SharedClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedClock")
    }
}

/// `SystemTime::now()`.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Wall-clock time that advances exactly as tokio's clock does: `base` plus the tokio time
/// elapsed since the clock was made. Under `tokio::time::pause()` time only moves when the
/// runtime is idle (or a test advances it), so a two-hour token lifetime passes in
/// microseconds, and every timer fires at the wall-clock time it was scheduled for.
pub struct TokioClock {
    base: SystemTime,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(base: SystemTime) -> Self {
        TokioClock {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> SystemTime {
        let elapsed = self.start.elapsed();
        self.base.checked_add(elapsed).unwrap_or(self.base)
    }
}

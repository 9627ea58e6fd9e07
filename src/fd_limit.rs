//! The open-file budget: raising the soft `RLIMIT_NOFILE` to the hard limit at start, and how
//! many client connections each HTTP worker may hold within it.
//!
//! Every connection is a file descriptor. The soft limit most shells and many service managers
//! hand out is 1,024, while the hard limit is far higher (systemd: 524,288): a process may raise
//! its own soft limit up to the hard one without privileges. Left at 1,024, a thousand idle or
//! stalled clients make `accept` fail with `EMFILE`, and every other client (health checks, the
//! token reads) waits behind them.

/// Descriptors kept back from client connections: the store file, upstream (WeChat) and Redis
/// connections, the listener, epoll and signal descriptors, stdio. A few per app is plenty (one
/// upstream connection pool per actor, rarely more than a couple of sockets each); 256 covers a
/// large fleet of apps and the Redis connection manager with room to spare.
pub const RESERVED_FDS: u64 = 256;

/// actix-web's own default per-worker cap. A derived cap never exceeds it: past that, more
/// connections per worker only mean more slow clients queued on one thread.
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;

/// The soft open-file limit before and after [`raise_nofile`], and the hard limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NofileLimits {
    pub before: u64,
    pub after: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Idempotent; returns the figures either
/// way. If the kernel refuses (macOS reports an infinite hard limit it does not honour), the
/// soft limit stays as it was and `after == before`.
pub fn raise_nofile() -> std::io::Result<NofileLimits> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we own and pass by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // rlim_t is u64 on the 64-bit targets wxtoken runs on.
    let before: u64 = lim.rlim_cur;
    let hard: u64 = lim.rlim_max;
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(NofileLimits {
            before,
            after: before,
            hard,
        });
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit only reads the struct we pass by pointer.
    let after = if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        hard
    } else {
        before
    };
    Ok(NofileLimits {
        before,
        after,
        hard,
    })
}

/// Connections one worker may hold when the configuration says 0 (derive it): the open-file
/// limit less [`RESERVED_FDS`], shared by `workers`, at least 1 and at most
/// [`DEFAULT_MAX_CONNECTIONS`].
pub fn derived_max_connections(nofile: u64, workers: usize) -> usize {
    let budget = nofile.saturating_sub(RESERVED_FDS);
    let workers = u64::try_from(workers.max(1)).unwrap_or(u64::MAX);
    let per_worker = usize::try_from(budget / workers).unwrap_or(usize::MAX);
    per_worker.clamp(1, DEFAULT_MAX_CONNECTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_and_the_rest_shared_by_the_workers() {
        assert_eq!(derived_max_connections(1024, 2), (1024 - 256) / 2);
        assert_eq!(derived_max_connections(1024, 1), 768);
        assert_eq!(derived_max_connections(20_000, 4), (20_000 - 256) / 4);
    }

    #[test]
    fn the_derived_cap_stays_between_one_and_the_actix_default() {
        // A limit below the reserve still lets a worker serve (and the operator sees the
        // figures in the start-up log).
        assert_eq!(derived_max_connections(100, 2), 1);
        assert_eq!(derived_max_connections(0, 0), 1);
        assert_eq!(
            derived_max_connections(1_048_576, 1),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(
            derived_max_connections(u64::MAX, 1),
            DEFAULT_MAX_CONNECTIONS
        );
        // Zero workers is read as one, not a division by zero.
        assert_eq!(derived_max_connections(1024, 0), 768);
    }

    #[test]
    fn raising_ends_with_the_soft_limit_at_the_hard_limit() {
        let first = raise_nofile().expect("getrlimit works");
        assert!(first.after >= first.before);
        assert!(first.after <= first.hard);
        let again = raise_nofile().expect("getrlimit works");
        assert_eq!(again.before, first.after, "the raise stuck");
        assert_eq!(again.after, again.before, "a second raise changes nothing");
    }
}

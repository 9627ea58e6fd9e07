//! When a failed delivery is tried again, and when it is given up: pure functions of the
//! attempt count and the time in milliseconds, unit-tested on a given clock.

use std::time::Duration;

use crate::time::UnixMillis;

/// The first wait after a failed attempt: a receiver restarting is back within seconds.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait between attempts: a receiver that comes back after an outage gets its
/// backlog within five minutes, and a day of retries is under 300 attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Up to this fraction of a wait is taken off at random, so the deliveries that failed together
/// (a receiver down) do not all come back in the same second.
pub const JITTER: f64 = 0.25;
/// How long an attempt waits for the receiver's answer: a 2xx later than this is a failure.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What follows a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Try again at this time.
    Retry(UnixMillis),
    /// `max_age` has passed since `age_from`: the delivery is dead.
    Dead,
}

/// The wait after `attempts` failed attempts (1 for the first): `BACKOFF_MIN` doubled per
/// attempt up to `BACKOFF_MAX`, less up to [`JITTER`] of it (`jitter` in `0.0..1.0` picks how
/// much), never under `BACKOFF_MIN`.
pub fn backoff(attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX);
    let off = base.mul_f64(JITTER * jitter.clamp(0.0, 1.0));
    base.saturating_sub(off).max(BACKOFF_MIN)
}

/// After the `attempts`-th failed attempt at `now`: the next attempt's time, or dead. The last
/// attempt is made at the deadline (`age_from + max_age`) itself when the backoff would pass
/// it, so a receiver back just before the deadline still gets its backlog.
pub fn after_failure(
    attempts: u32,
    now: UnixMillis,
    age_from: UnixMillis,
    max_age: Duration,
    jitter: f64,
) -> Next {
    let deadline = age_from.saturating_add(max_age);
    if now >= deadline {
        return Next::Dead;
    }
    Next::Retry(now.saturating_add(backoff(attempts, jitter)).min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> UnixMillis {
        UnixMillis::new(v).expect("in range")
    }

    #[test]
    fn the_backoff_doubles_from_one_second_to_five_minutes_within_its_jitter() {
        let exact: Vec<u64> = (1..=12)
            .map(|n| backoff(n, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(
            exact,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000,
                300_000, 300_000
            ]
        );
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_MAX);
        for n in 1..=40 {
            for j in [0.0, 0.3, 0.5, 0.999, 1.0, -3.0, 7.0] {
                let b = backoff(n, j);
                let base = backoff(n, 0.0);
                assert!(
                    b >= BACKOFF_MIN && b <= BACKOFF_MAX,
                    "attempt {n}, jitter {j}: {b:?}"
                );
                assert!(
                    b <= base && b >= base.mul_f64(1.0 - JITTER).max(BACKOFF_MIN),
                    "{n} {j}: {b:?}"
                );
            }
        }
        // The jitter spreads: the most taken off a 5-minute wait is 75 s.
        assert_eq!(backoff(20, 1.0), Duration::from_secs(225));
    }

    #[test]
    fn a_delivery_is_dead_at_max_age_after_its_last_attempt_at_the_deadline() {
        let received = 1_000_000;
        let max_age = Duration::from_secs(10);
        // (attempts, failed at, received at, what comes next; None: dead).
        let cases = [
            // Failures at 0 s, 1 s, 3 s, 7 s after receipt: 1, 2, 4 s waits, then the deadline.
            (1, received, received, Some(1_001_000)),
            (2, 1_001_000, received, Some(1_003_000)),
            (3, 1_003_000, received, Some(1_007_000)),
            (4, 1_007_000, received, Some(1_010_000)),
            // A failure at the deadline, or past it, is the end.
            (5, 1_010_000, received, None),
            (5, 1_009_999, received, Some(1_010_000)),
            (1, 9_000_000, received, None),
            // An admin's retry counts the age from then.
            (1, 9_000_000, 9_000_000, Some(9_001_000)),
        ];
        for (attempts, at, from, next) in cases {
            let expected = next.map_or(Next::Dead, |n| Next::Retry(ms(n)));
            assert_eq!(
                after_failure(attempts, ms(at), ms(from), max_age, 0.0),
                expected,
                "attempt {attempts} failed at {at}"
            );
        }
        // Times at the end of the range saturate instead of overflowing.
        assert_eq!(
            after_failure(1, UnixMillis::MAX, UnixMillis::MAX, max_age, 0.0),
            Next::Dead
        );
    }
}

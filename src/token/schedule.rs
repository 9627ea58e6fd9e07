//! Pure timing policy: when to refresh a token and how long to back off after a failure.
//!
//! Kept free of actors and clocks so it can be unit-tested exactly; callers pass the current
//! time and a random number in `[0, 1)`.

use std::time::{Duration, SystemTime};

pub use crate::status::ForceBudget;

/// Part of the margin used as random jitter: up to 10% earlier, so that many apps (or many
/// restarts) do not all refresh in the same second.
pub const JITTER_FRACTION: f64 = 0.10;

/// The refresh margin actually used for a token of `lifetime`: the configured one, but never
/// more than half the lifetime, so a short-lived token is not refreshed the moment it arrives.
pub fn effective_margin(margin: Duration, lifetime: Duration) -> Duration {
    margin.min(lifetime / 2)
}

/// How long from `now` until the proactive refresh of a token that expires at `expires_at`
/// after `lifetime`. `random` in `[0, 1)` picks the jitter. Zero when the moment has passed.
pub fn refresh_delay(
    now: SystemTime,
    expires_at: SystemTime,
    lifetime: Duration,
    margin: Duration,
    random: f64,
) -> Duration {
    let margin = effective_margin(margin, lifetime);
    let jitter = margin.mul_f64(JITTER_FRACTION * random.clamp(0.0, 1.0));
    let lead = margin + jitter;
    expires_at
        .checked_sub(lead)
        .and_then(|at| at.duration_since(now).ok())
        .unwrap_or_default()
}

/// Start-up spread per credential started together: a cohort of N spreads its first refreshes
/// over N times this, up to [`MAX_SPREAD_FRACTION`] of the refresh cycle.
pub const SPREAD_PER_CREDENTIAL: Duration = Duration::from_millis(500);

/// The widest start-up spread, as a part of the refresh cycle (lifetime less margin). Tokens
/// fetched together keep the phase their first refresh gives them, so spread over three
/// quarters of the cycle, every later minute sees at most 4/3 of the mean rate (the goal is
/// within 2x). The earliest first refresh still comes a quarter into the cycle: the cost is one
/// early fetch per token, once.
pub const MAX_SPREAD_FRACTION: f64 = 0.75;

/// How much earlier than its normal time the first refresh of a token may come, when `cohort`
/// credentials were fetched together at start-up (so they would all come due together).
pub fn startup_spread(cohort: usize, lifetime: Duration, margin: Duration) -> Duration {
    let cycle = lifetime.saturating_sub(effective_margin(margin, lifetime));
    let wanted = SPREAD_PER_CREDENTIAL.saturating_mul(u32::try_from(cohort).unwrap_or(u32::MAX));
    wanted.min(cycle.mul_f64(MAX_SPREAD_FRACTION))
}

/// Backoff before retry number `attempt` (0 for the first retry): `min` doubled per attempt,
/// capped at `max`, then shortened by up to 20% at random so retries of many apps spread out.
pub fn backoff(attempt: u32, min: Duration, max: Duration, random: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(30));
    let base = min.saturating_mul(factor).min(max);
    base.mul_f64(1.0 - 0.2 * random.clamp(0.0, 1.0))
}

/// The refresh margin for a stable token: WeChat hands out a new one only in its last 5
/// minutes (the fake scales that window to half of a short lifetime), so refresh inside that
/// window, with room left for the jitter.
pub fn stable_margin(margin: Duration, lifetime: Duration) -> Duration {
    let window = if lifetime > Duration::from_secs(600) {
        Duration::from_secs(300)
    } else {
        lifetime / 2
    };
    margin.min(window.mul_f64(0.9))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn margin_is_clamped_to_half_the_lifetime() {
        assert_eq!(effective_margin(S(600), S(7200)), S(600));
        assert_eq!(effective_margin(S(600), S(120)), S(60));
    }

    #[test]
    fn refresh_happens_margin_before_expiry_with_bounded_jitter() {
        let now = SystemTime::UNIX_EPOCH + S(1_000_000);
        let exp = now + S(7200);
        assert_eq!(refresh_delay(now, exp, S(7200), S(600), 0.0), S(6600));
        // Full jitter moves it 10% of the margin earlier.
        assert_eq!(refresh_delay(now, exp, S(7200), S(600), 1.0), S(6540));
        let d = refresh_delay(now, exp, S(7200), S(600), 0.5);
        assert!(d > S(6540) && d < S(6600));
    }

    #[test]
    fn refresh_of_a_nearly_expired_token_is_immediate() {
        let now = SystemTime::UNIX_EPOCH + S(1_000_000);
        assert_eq!(refresh_delay(now, now + S(100), S(7200), S(600), 0.3), S(0));
        assert_eq!(refresh_delay(now, now - S(5), S(7200), S(600), 0.3), S(0));
    }

    #[test]
    fn stable_tokens_refresh_inside_the_last_five_minutes() {
        assert_eq!(stable_margin(S(600), S(7200)), S(270));
        assert_eq!(stable_margin(S(60), S(7200)), S(60));
        assert_eq!(stable_margin(S(600), S(20)), S(9));
    }

    #[test]
    fn startup_spread_grows_with_the_cohort_up_to_most_of_the_cycle() {
        assert_eq!(
            startup_spread(1, S(7200), S(600)),
            Duration::from_millis(500)
        );
        assert_eq!(startup_spread(100, S(7200), S(600)), S(50));
        // 10,000 tokens: capped at 75% of the 6,600 s cycle.
        assert_eq!(startup_spread(10_000, S(7200), S(600)), S(4950));
        assert_eq!(startup_spread(usize::MAX, S(7200), S(600)), S(4950));
        // A short lifetime: the margin is half of it, the cap 75% of the rest.
        assert_eq!(startup_spread(10_000, S(120), S(600)), S(45));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0, S(1), S(60), 0.0), S(1));
        assert_eq!(backoff(3, S(1), S(60), 0.0), S(8));
        assert_eq!(backoff(10, S(1), S(60), 0.0), S(60));
        assert_eq!(backoff(u32::MAX, S(1), S(60), 0.0), S(60));
        assert_eq!(backoff(3, S(1), S(60), 1.0), Duration::from_millis(6400));
    }
}

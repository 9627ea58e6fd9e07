//! [`UnixMillis`]: the one timestamp type of every stored record, range-checked where a record
//! is read, and [`rfc3339`], the one formatter of the times wxtoken puts in its answers.
//!
//! The range is the Unix epoch to the last millisecond of 9999-12-31 (UTC):
//! - The upper bound is where RFC 3339 ends (four-digit years): `humantime`'s formatter fails
//!   past it, and a `to_string()` over that failure panics. Every time inside it is also a
//!   `SystemTime` on every platform Rust supports, so conversions cannot overflow.
//! - The lower bound is the epoch rather than some "sane" year such as 2000: stored times are
//!   unsigned milliseconds, so nothing earlier can be written anyway, and the records wxtoken
//!   writes today carry epoch-near times that must keep loading. An authorizer listed by WeChat
//!   without an `auth_time` is stored as authorized at the epoch; refusing it as corrupt would
//!   lose its refresh token, which only the merchant authorizing again can replace.
//!
//! A stored time outside the range makes its record corrupt (see `store`); a time from our
//! own clock or from WeChat is clamped into it on the way in, so whatever wxtoken writes it can
//! read back; and the formatter clamps too, so no time can make an answer panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The message of [`OutOfRange`]: the stores recognise a refusal of a time by it (see
/// `store::json_refusal`) without printing anything else of a serde error.
pub(crate) const OUT_OF_RANGE: &str =
    "a time outside 1970-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999Z";

/// A stored time outside [`UnixMillis::EPOCH`] ..= [`UnixMillis::MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", OUT_OF_RANGE)]
pub struct OutOfRange;

/// Milliseconds since the Unix epoch, within the range of the module documentation. The field
/// is private: a value comes from [`UnixMillis::new`] (checked: what a store hands back) or
/// from a saturating constructor (our clock, WeChat's numbers), and is in range either way.
///
/// As JSON it is the bare number, and deserializing refuses one out of range: the record
/// formats of the stores hold this type, so no decoder can forget the check.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "u64", into = "u64")]
pub struct UnixMillis(u64);

impl UnixMillis {
    /// 1970-01-01T00:00:00.000Z.
    pub const EPOCH: UnixMillis = UnixMillis(0);
    /// 9999-12-31T23:59:59.999Z, the last millisecond RFC 3339 can write.
    pub const MAX: UnixMillis = UnixMillis(253_402_300_799_999);

    /// `ms` after the epoch, if in range: for times read from outside that must be refused,
    /// not repaired, when absurd (a stored record).
    pub const fn new(ms: u64) -> Option<UnixMillis> {
        if ms <= Self::MAX.0 {
            Some(UnixMillis(ms))
        } else {
            None
        }
    }

    /// `secs` after the epoch, if in range (WeChat's times are seconds).
    pub fn from_secs(secs: u64) -> Option<UnixMillis> {
        secs.checked_mul(1000).and_then(UnixMillis::new)
    }

    /// `secs` after the epoch, or [`UnixMillis::MAX`] past it.
    pub fn saturating_from_secs(secs: u64) -> UnixMillis {
        UnixMillis::from_secs(secs).unwrap_or(Self::MAX)
    }

    /// `t` to the millisecond (truncated), clamped into the range: [`UnixMillis::EPOCH`] for a
    /// time before it, [`UnixMillis::MAX`] for one after.
    pub fn saturating_from(t: SystemTime) -> UnixMillis {
        let Ok(since) = t.duration_since(UNIX_EPOCH) else {
            return Self::EPOCH;
        };
        u64::try_from(since.as_millis())
            .ok()
            .and_then(UnixMillis::new)
            .unwrap_or(Self::MAX)
    }

    /// The clock's time now, clamped (see [`UnixMillis::saturating_from`]).
    pub fn now() -> UnixMillis {
        UnixMillis::saturating_from(SystemTime::now())
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The same time as a `SystemTime`. Every time in the range is one, on every platform
    /// (Unix holds 64-bit seconds, Windows goes to the year 30828), so the fallback is never
    /// taken; it is there so that not even a strange platform can panic here.
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(self.0))
            .unwrap_or(UNIX_EPOCH)
    }

    /// `self + d`, or [`UnixMillis::MAX`] past it.
    pub fn saturating_add(self, d: Duration) -> UnixMillis {
        u64::try_from(d.as_millis())
            .ok()
            .and_then(|ms| self.0.checked_add(ms))
            .and_then(UnixMillis::new)
            .unwrap_or(Self::MAX)
    }

    /// RFC 3339, UTC, to the second (`2026-11-25T15:00:00Z`): what every answer carries.
    pub fn rfc3339(self) -> String {
        // In range by construction, so humantime's formatter cannot fail (it does past 9999).
        humantime::format_rfc3339_seconds(self.to_system_time()).to_string()
    }
}

impl TryFrom<u64> for UnixMillis {
    type Error = OutOfRange;

    fn try_from(ms: u64) -> Result<UnixMillis, OutOfRange> {
        UnixMillis::new(ms).ok_or(OutOfRange)
    }
}

impl From<UnixMillis> for u64 {
    fn from(t: UnixMillis) -> u64 {
        t.0
    }
}

impl From<UnixMillis> for SystemTime {
    fn from(t: UnixMillis) -> SystemTime {
        t.to_system_time()
    }
}

/// `t` as RFC 3339, UTC, to the second, clamped into 1970-01-01T00:00:00Z ..=
/// 9999-12-31T23:59:59Z: the one formatter of the times in wxtoken's answers, which no time
/// can make panic.
pub fn rfc3339(t: SystemTime) -> String {
    UnixMillis::saturating_from(t).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 10000-01-01T00:00:00Z, the first second RFC 3339 cannot write.
    const YEAR_10000_MS: u64 = 253_402_300_800_000;

    #[test]
    fn the_range_is_the_epoch_to_the_end_of_9999() {
        assert_eq!(UnixMillis::new(0), Some(UnixMillis::EPOCH));
        assert_eq!(UnixMillis::new(YEAR_10000_MS - 1), Some(UnixMillis::MAX));
        assert_eq!(UnixMillis::new(YEAR_10000_MS), None);
        assert_eq!(UnixMillis::new(u64::MAX), None);
        assert_eq!(UnixMillis::try_from(YEAR_10000_MS), Err(OutOfRange));
        assert_eq!(
            UnixMillis::from_secs(253_402_300_799),
            UnixMillis::new(253_402_300_799_000)
        );
        assert_eq!(UnixMillis::from_secs(253_402_300_800), None);
        assert_eq!(
            UnixMillis::from_secs(u64::MAX),
            None,
            "no overflow on the way to ms"
        );
    }

    #[test]
    fn json_is_the_bare_number_and_refuses_one_out_of_range() {
        let t = UnixMillis::new(1_700_000_000_123).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "1700000000123");
        assert_eq!(
            serde_json::from_str::<UnixMillis>("1700000000123").unwrap(),
            t
        );
        let max = serde_json::to_string(&UnixMillis::MAX).unwrap();
        assert_eq!(
            serde_json::from_str::<UnixMillis>(&max).unwrap(),
            UnixMillis::MAX
        );
        for bad in [
            YEAR_10000_MS.to_string(),
            u64::MAX.to_string(),
            "-1".into(),
            "1.5".into(),
            "\"1700000000123\"".into(),
        ] {
            assert!(serde_json::from_str::<UnixMillis>(&bad).is_err(), "{bad}");
        }
        let e = serde_json::from_str::<UnixMillis>(&u64::MAX.to_string()).unwrap_err();
        assert!(e.to_string().starts_with(OUT_OF_RANGE), "{e}");
    }

    #[test]
    fn round_trips_through_system_time_to_the_millisecond() {
        for ms in [0, 1, 1_700_000_000_123, UnixMillis::MAX.as_millis()] {
            let t = UnixMillis::new(ms).unwrap();
            assert_eq!(UnixMillis::saturating_from(t.to_system_time()), t);
            assert_eq!(SystemTime::from(t), t.to_system_time());
            assert_eq!(u64::from(t), ms);
        }
        // Sub-millisecond parts are truncated, never rounded up into the next millisecond.
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_999_999);
        assert_eq!(
            UnixMillis::saturating_from(t).as_millis(),
            1_700_000_000_123
        );
    }

    #[test]
    fn conversions_and_arithmetic_saturate() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(UnixMillis::saturating_from(before_epoch), UnixMillis::EPOCH);
        let year_10000 = UNIX_EPOCH + Duration::from_millis(YEAR_10000_MS);
        assert_eq!(UnixMillis::saturating_from(year_10000), UnixMillis::MAX);
        // As far as the platform's SystemTime goes (on Linux, i64 seconds).
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1_000_000);
        assert_eq!(UnixMillis::saturating_from(far), UnixMillis::MAX);
        assert_eq!(UnixMillis::saturating_from_secs(u64::MAX), UnixMillis::MAX);
        assert_eq!(
            UnixMillis::saturating_from_secs(1_700_000_000).as_millis(),
            1_700_000_000_000
        );
        let t = UnixMillis::new(1_000).unwrap();
        assert_eq!(
            t.saturating_add(Duration::from_millis(500)).as_millis(),
            1_500
        );
        assert_eq!(t.saturating_add(Duration::MAX), UnixMillis::MAX);
        assert_eq!(
            UnixMillis::MAX.saturating_add(Duration::from_millis(1)),
            UnixMillis::MAX
        );
        assert!(UnixMillis::now() > UnixMillis::new(1_700_000_000_000).unwrap());
    }

    #[test]
    fn the_formatter_clamps_instead_of_panicking() {
        assert_eq!(UnixMillis::EPOCH.rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixMillis::MAX.rfc3339(), "9999-12-31T23:59:59Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_999);
        assert_eq!(
            rfc3339(t),
            "2023-11-14T22:13:20Z",
            "to the second, truncated"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(YEAR_10000_MS)),
            "9999-12-31T23:59:59Z"
        );
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }
}

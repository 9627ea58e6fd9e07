//! WeChat's daily limits as counted per credential: the day's token calls (`QuotaUsage`) and
//! the stable grant's forced refreshes (`ForceBudget`). Both count Beijing days (UTC+8), when
//! WeChat's counters reset.

use std::time::{Duration, SystemTime};

/// Calls to WeChat's token endpoint on one quota day. WeChat's daily quota resets at midnight
/// Beijing time (UTC+8), so days are counted in that zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    /// Days since the Unix epoch, in UTC+8.
    pub day: u64,
    pub used: u64,
}

impl QuotaUsage {
    const BEIJING_OFFSET_SECS: u64 = 8 * 3600;

    pub fn day_of(t: SystemTime) -> u64 {
        let secs = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        (secs + Self::BEIJING_OFFSET_SECS) / 86_400
    }

    /// Calls made on the day of `now` (zero once that day is over).
    pub fn used_on(&self, now: SystemTime) -> u64 {
        if self.day == Self::day_of(now) {
            self.used
        } else {
            0
        }
    }

    /// One more call at `now`.
    pub fn count(&mut self, now: SystemTime) {
        let day = Self::day_of(now);
        if day != self.day {
            *self = QuotaUsage { day, used: 0 };
        }
        self.used += 1;
    }

    /// Takes in a count seen elsewhere (a stored record, the fleet's budget): a later day
    /// replaces ours, and on the same day the larger count wins. A day's count only grows, so
    /// whichever side saw more calls is closer to WeChat's; an older day says nothing of today.
    pub fn merge(&mut self, seen: QuotaUsage) {
        if seen.day > self.day || (seen.day == self.day && seen.used > self.used) {
            *self = seen;
        }
    }
}

/// WeChat's limits on `force_refresh` of stable tokens: 20 a day (Beijing days), 30 s apart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForceBudget {
    day: u64,
    used: u32,
    last: Option<SystemTime>,
}

impl ForceBudget {
    pub const PER_DAY: u32 = 20;
    pub const MIN_GAP: Duration = Duration::from_secs(30);

    pub fn allows(&self, now: SystemTime) -> bool {
        let day = QuotaUsage::day_of(now);
        let used_today = if day == self.day { self.used } else { 0 };
        let gap_ok = self
            .last
            .is_none_or(|l| now.duration_since(l).unwrap_or_default() >= Self::MIN_GAP);
        used_today < Self::PER_DAY && gap_ok
    }

    pub fn spend(&mut self, now: SystemTime) {
        let day = QuotaUsage::day_of(now);
        if day != self.day {
            self.day = day;
            self.used = 0;
        }
        self.used += 1;
        self.last = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn quota_days_turn_at_midnight_beijing_time() {
        let epoch = SystemTime::UNIX_EPOCH;
        // 15:59:59 UTC is 23:59:59 in Beijing; one second later a new quota day starts.
        let before = epoch + Duration::from_secs(20_000 * 86_400 + 15 * 3600 + 3599);
        let after = before + Duration::from_secs(1);
        let mut q = QuotaUsage::default();
        q.count(before);
        q.count(before);
        assert_eq!(q.used_on(before), 2);
        assert_eq!(q.used_on(after), 0);
        q.count(after);
        assert_eq!(q.used_on(after), 1);
        assert_eq!(QuotaUsage::day_of(after), QuotaUsage::day_of(before) + 1);
    }

    #[test]
    fn a_merged_count_keeps_the_later_day_and_the_larger_count_of_a_day() {
        let q = |day, used| QuotaUsage { day, used };
        let mut mine = q(10, 5);
        mine.merge(q(10, 3));
        assert_eq!(mine, q(10, 5), "fewer calls of the same day are not news");
        mine.merge(q(9, 50));
        assert_eq!(mine, q(10, 5), "an older day says nothing of today");
        mine.merge(q(10, 7));
        assert_eq!(mine, q(10, 7));
        mine.merge(q(11, 1));
        assert_eq!(mine, q(11, 1), "a new day starts over");
    }

    #[test]
    fn forced_refreshes_are_limited_to_20_a_day_30_s_apart() {
        let t0 = SystemTime::UNIX_EPOCH + S(20_000 * 86_400);
        let mut b = ForceBudget::default();
        assert!(b.allows(t0));
        b.spend(t0);
        assert!(!b.allows(t0 + S(29)));
        assert!(b.allows(t0 + S(30)));
        let mut t = t0;
        for _ in 1..20 {
            t += S(31);
            assert!(b.allows(t));
            b.spend(t);
        }
        assert!(!b.allows(t + S(3600)), "21st of the day refused");
        assert!(
            b.allows(t0 + S(86_400)),
            "a new Beijing day resets the count"
        );
    }
}

//! The fake's bookkeeping: apps, the two token families, quotas, the fault queue, call counters
//! and a clock that tests can move forward. No HTTP here, so every rule is unit-tested directly.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};

use super::{Endpoint, FakeConfig, Fault, Validity};

/// The only grant type WeChat accepts on both token endpoints.
const GRANT_TYPE: &str = "client_credential";

/// Quotas and force-refresh limits reset when the fake's clock enters a new day (counted from
/// start, not from midnight: a fake has no reason to care about the time zone).
const DAY: Duration = Duration::from_secs(86_400);

/// A stable token is handed out unchanged until it has this much life left; then a call mints
/// its successor (WeChat: "rotates it in the last 5 minutes of its life").
const STABLE_ROTATION_WINDOW: Duration = Duration::from_secs(300);

/// `force_refresh: true` limits per appid (errcode 45011 beyond them).
const FORCE_REFRESH_PER_DAY: u32 = 20;
const FORCE_REFRESH_MIN_GAP: Duration = Duration::from_secs(30);

/// Dead tokens are remembered so that the probe can still tell "replaced" (40001) and
/// "expired" (42001) from "never seen" (40001). Past this many remembered tokens the oldest dead
/// ones are forgotten, which bounds memory when a benchmark mints for hours; a forgotten token
/// answers 40001 like an unknown one.
const REMEMBERED_TOKENS: usize = 100_000;

/// URL-safe alphabet for minted tokens: real tokens are letters, digits, `_` and `-`.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Token lengths the fake will mint. WeChat says to reserve 512 characters; below 16 a random
/// token would stop being unguessable.
pub(crate) const TOKEN_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=512;

/// A WeChat error answer (HTTP 200 with `errcode` and `errmsg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WxError(pub(crate) i64);

impl WxError {
    pub(crate) const INVALID_CREDENTIAL: WxError = WxError(40001);
    pub(crate) const INVALID_GRANT_TYPE: WxError = WxError(40002);
    pub(crate) const INVALID_APPID: WxError = WxError(40013);
    pub(crate) const INVALID_SECRET: WxError = WxError(40125);
    pub(crate) const TOKEN_MISSING: WxError = WxError(41001);
    pub(crate) const APPID_MISSING: WxError = WxError(41002);
    pub(crate) const SECRET_MISSING: WxError = WxError(41004);
    pub(crate) const TOKEN_EXPIRED: WxError = WxError(42001);
    pub(crate) const REQUIRE_GET: WxError = WxError(43001);
    pub(crate) const REQUIRE_POST: WxError = WxError(43002);
    pub(crate) const DAILY_QUOTA: WxError = WxError(45009);
    pub(crate) const MINUTE_QUOTA: WxError = WxError(45011);
    pub(crate) const DATA_FORMAT: WxError = WxError(47001);

    /// The errmsg WeChat sends with this errcode (without the `rid: ...` suffix the real one
    /// appends, so that tests can compare messages exactly).
    pub(crate) fn errmsg(self) -> &'static str {
        match self.0 {
            -1 => "system error",
            40001 => "invalid credential, access_token is invalid or not latest",
            40002 => "invalid grant_type",
            40013 => "invalid appid",
            40014 => "invalid access_token",
            40125 => "invalid appsecret",
            40164 => "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist",
            40243 => "AppSecret is frozen",
            41001 => "access_token missing",
            41002 => "appid missing",
            41004 => "appsecret missing",
            42001 => "access_token expired",
            43001 => "require GET method",
            43002 => "require POST method",
            45009 => "reach max api daily quota limit",
            45011 => "api minute-quota reach limit",
            47001 => "data format error",
            48001 => "api unauthorized",
            _ => "fault injected",
        }
    }
}

/// What a successful token call answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
}

/// The credential fields of a token request, as sent (absent and empty are both "missing").
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Credentials<'a> {
    pub(crate) grant_type: Option<&'a str>,
    pub(crate) appid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
}

/// A short, stable fingerprint of a token for logs: never log the token itself.
pub(crate) fn fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    hex::encode(&digest[..4])
}

/// The fake's clock: real monotonic time plus an offset that tests add to, so that expiry,
/// rotation windows, the 30 s force-refresh gap and daily quotas can be crossed without sleeping.
#[derive(Debug)]
struct Clock {
    origin: Instant,
    offset: Duration,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    fn day(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / DAY.as_secs()
    }
}

/// One minted token. A token is alive until the earlier of its expiry and its kill time.
#[derive(Debug)]
struct TokenRecord {
    lifetime: Duration,
    expires_at: Instant,
    /// Set when a newer token replaced this one: the moment the replacement takes effect
    /// (now, or now plus the overlap for the previous /cgi-bin/token token).
    killed_at: Option<Instant>,
}

impl TokenRecord {
    fn dies_at(&self) -> Instant {
        self.killed_at
            .map_or(self.expires_at, |killed| killed.min(self.expires_at))
    }

    fn validity(&self, now: Instant) -> Validity {
        if now < self.dies_at() {
            Validity::Valid
        } else if self.killed_at.is_some_and(|k| k < self.expires_at) {
            Validity::Replaced
        } else {
            Validity::Expired
        }
    }
}

/// Every token the fake remembers, of both families (they share one namespace, as the probe
/// accepts either).
#[derive(Debug)]
struct TokenBook {
    records: HashMap<String, TokenRecord>,
    /// Mint order, oldest first, for forgetting old dead tokens.
    order: VecDeque<String>,
    /// How many tokens to remember ([`REMEMBERED_TOKENS`]; smaller in unit tests).
    limit: usize,
}

impl TokenBook {
    fn mint(&mut self, now: Instant, lifetime: Duration, len: usize) -> String {
        let mut rng = rand::rng();
        let token = loop {
            let candidate: String = (0..len)
                .map(|_| char::from(TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())]))
                .collect();
            // Collisions are astronomically unlikely (>= 96 random bits), but a repeated token
            // would corrupt the bookkeeping, so rule it out rather than argue about it.
            if !self.records.contains_key(&candidate) {
                break candidate;
            }
        };
        self.records.insert(
            token.clone(),
            TokenRecord {
                lifetime,
                expires_at: now + lifetime,
                killed_at: None,
            },
        );
        self.order.push_back(token.clone());
        self.forget_old(now);
        token
    }

    /// Drops the oldest dead token while over the memory bound. A still-living old token (an
    /// idle app's current one) goes to the back of the queue instead: it must stay known.
    fn forget_old(&mut self, now: Instant) {
        if self.order.len() <= self.limit {
            return;
        }
        for _ in 0..self.order.len() {
            let Some(oldest) = self.order.pop_front() else {
                return;
            };
            let alive = self
                .records
                .get(&oldest)
                .is_some_and(|r| r.validity(now) == Validity::Valid);
            if alive {
                self.order.push_back(oldest);
            } else {
                self.records.remove(&oldest);
                return;
            }
        }
    }

    /// The token stops working at `at` (or earlier, if it was already due to die earlier).
    fn kill(&mut self, token: &str, at: Instant) {
        if let Some(record) = self.records.get_mut(token) {
            record.killed_at = Some(record.killed_at.map_or(at, |k| k.min(at)));
        }
    }

    fn validity(&self, token: &str, now: Instant) -> Validity {
        self.records
            .get(token)
            .map_or(Validity::Unknown, |r| r.validity(now))
    }

    /// Time left and total lifetime of a token that is still alive.
    fn remaining(&self, token: &str, now: Instant) -> Option<(Duration, Duration)> {
        let record = self.records.get(token)?;
        let left = record.dies_at().checked_duration_since(now)?;
        (!left.is_zero()).then_some((left, record.lifetime))
    }
}

/// One configured app and what it has used today.
#[derive(Debug)]
struct AppState {
    secret: String,
    /// Latest /cgi-bin/token token, and the one it replaced (alive during the overlap).
    token: Option<String>,
    token_prev: Option<String>,
    /// Latest /cgi-bin/stable_token token, and the one it rotated out (alive until its expiry).
    stable: Option<String>,
    stable_prev: Option<String>,
    quota_used: u32,
    forced_today: u32,
    last_forced: Option<Instant>,
    minted: u64,
    fetched: u64,
}

/// Counters of requests received per endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Calls {
    pub(crate) token: u64,
    pub(crate) stable_token: u64,
    pub(crate) probe: u64,
}

/// All mutable state of one fake server. Lives behind a std `Mutex`: every method is short and
/// synchronous, and no `.await` happens while the lock is held.
#[derive(Debug)]
pub(crate) struct FakeState {
    clock: Clock,
    day: u64,
    apps: HashMap<String, AppState>,
    book: TokenBook,
    expires_in: u64,
    overlap: Duration,
    token_len: usize,
    daily_quota: u32,
    faults: VecDeque<(Fault, u32)>,
    calls: Calls,
}

impl FakeState {
    pub(crate) fn new(cfg: &FakeConfig) -> FakeState {
        let origin = Instant::now();
        let apps = cfg
            .apps
            .iter()
            .map(|(appid, secret)| {
                let app = AppState {
                    secret: secret.clone(),
                    token: None,
                    token_prev: None,
                    stable: None,
                    stable_prev: None,
                    quota_used: 0,
                    forced_today: 0,
                    last_forced: None,
                    minted: 0,
                    fetched: 0,
                };
                (appid.clone(), app)
            })
            .collect();
        FakeState {
            clock: Clock {
                origin,
                offset: Duration::ZERO,
            },
            day: 0,
            apps,
            book: TokenBook {
                records: HashMap::new(),
                order: VecDeque::new(),
                limit: REMEMBERED_TOKENS,
            },
            expires_in: cfg.expires_in.max(1),
            overlap: Duration::from_secs(cfg.overlap_secs),
            token_len: cfg
                .token_len
                .clamp(*TOKEN_LEN_RANGE.start(), *TOKEN_LEN_RANGE.end()),
            daily_quota: cfg.daily_quota,
            faults: VecDeque::new(),
            calls: Calls::default(),
        }
    }

    // ---- counters, faults, settings -------------------------------------------------------

    pub(crate) fn count(&mut self, ep: Endpoint) {
        let counter = match ep {
            Endpoint::Token => &mut self.calls.token,
            Endpoint::StableToken => &mut self.calls.stable_token,
            Endpoint::Probe => &mut self.calls.probe,
        };
        *counter += 1;
    }

    pub(crate) fn calls(&self) -> Calls {
        self.calls
    }

    pub(crate) fn inject(&mut self, fault: Fault, times: u32) {
        if times > 0 {
            self.faults.push_back((fault, times));
        }
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The fault for this call, if any: the oldest injection that still has uses left.
    pub(crate) fn next_fault(&mut self) -> Option<Fault> {
        let (fault, left) = self.faults.front_mut()?;
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            self.faults.pop_front();
        }
        Some(fault)
    }

    pub(crate) fn set_expires_in(&mut self, secs: u64) {
        // A zero lifetime would mint tokens that are dead on arrival; one second is the floor.
        self.expires_in = secs.max(1);
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.clock.offset += by;
    }

    pub(crate) fn minted(&self, appid: &str) -> u64 {
        self.apps.get(appid).map_or(0, |a| a.minted)
    }

    pub(crate) fn fetched(&self, appid: &str) -> u64 {
        self.apps.get(appid).map_or(0, |a| a.fetched)
    }

    /// `(appid, minted)` for every configured app, sorted by appid.
    pub(crate) fn minted_all(&self) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .apps
            .iter()
            .map(|(appid, app)| (appid.clone(), app.minted))
            .collect();
        all.sort();
        all
    }

    pub(crate) fn current_token(&self, appid: &str) -> Option<String> {
        self.apps.get(appid)?.token.clone()
    }

    pub(crate) fn current_stable_token(&self, appid: &str) -> Option<String> {
        self.apps.get(appid)?.stable.clone()
    }

    pub(crate) fn validity(&self, token: &str) -> Validity {
        self.book.validity(token, self.clock.now())
    }

    // ---- the two token endpoints ----------------------------------------------------------

    /// `GET /cgi-bin/token`: every success mints a new token. The previous one keeps working for
    /// the overlap (capped by its own expiry); the one before it dies at once.
    pub(crate) fn token(&mut self, creds: Credentials<'_>) -> Result<Issued, WxError> {
        let now = self.clock.now();
        self.roll_day(now);
        let (appid, app) = authenticate(&mut self.apps, creds)?;
        if app.quota_used >= self.daily_quota {
            return Err(WxError::DAILY_QUOTA);
        }
        app.quota_used += 1;

        let lifetime = Duration::from_secs(self.expires_in);
        let token = self.book.mint(now, lifetime, self.token_len);
        if let Some(older) = app.token_prev.take() {
            self.book.kill(&older, now);
        }
        if let Some(previous) = app.token.take() {
            self.book.kill(&previous, now + self.overlap);
            app.token_prev = Some(previous);
        }
        app.token = Some(token.clone());
        app.minted += 1;
        app.fetched += 1;
        tracing::debug!(appid, token = %fingerprint(&token), expires_in = self.expires_in, "fake minted access_token");
        Ok(Issued {
            access_token: token,
            expires_in: self.expires_in,
        })
    }

    /// `POST /cgi-bin/stable_token`: the same token while it has more than the rotation window
    /// left, a new one in the window (the old one lives on until its expiry), or with
    /// `force_refresh` a new one that kills the old at once, within the force-refresh limits.
    pub(crate) fn stable_token(
        &mut self,
        creds: Credentials<'_>,
        force_refresh: bool,
    ) -> Result<Issued, WxError> {
        let now = self.clock.now();
        self.roll_day(now);
        let (appid, app) = authenticate(&mut self.apps, creds)?;

        if force_refresh {
            let too_soon = app
                .last_forced
                .is_some_and(|t| now.saturating_duration_since(t) < FORCE_REFRESH_MIN_GAP);
            if too_soon || app.forced_today >= FORCE_REFRESH_PER_DAY {
                return Err(WxError::MINUTE_QUOTA);
            }
            app.forced_today += 1;
            app.last_forced = Some(now);
            for old in [app.stable_prev.take(), app.stable.take()]
                .into_iter()
                .flatten()
            {
                self.book.kill(&old, now);
            }
        } else if let Some(current) = app.stable.as_deref() {
            if let Some((left, lifetime)) = self.book.remaining(current, now) {
                if left > rotation_window(lifetime) {
                    app.fetched += 1;
                    return Ok(Issued {
                        access_token: current.to_owned(),
                        expires_in: left.as_secs(),
                    });
                }
            }
        }

        let lifetime = Duration::from_secs(self.expires_in);
        let token = self.book.mint(now, lifetime, self.token_len);
        // In normal mode the rotated-out token is left to die at its own expiry.
        app.stable_prev = app.stable.replace(token.clone());
        app.minted += 1;
        app.fetched += 1;
        tracing::debug!(appid, token = %fingerprint(&token), force_refresh, expires_in = self.expires_in, "fake minted stable access_token");
        Ok(Issued {
            access_token: token,
            expires_in: self.expires_in,
        })
    }

    /// A new day of the fake clock resets the daily counters.
    fn roll_day(&mut self, now: Instant) {
        let day = self.clock.day(now);
        if day != self.day {
            self.day = day;
            for app in self.apps.values_mut() {
                app.quota_used = 0;
                app.forced_today = 0;
            }
        }
    }
}

/// The stable token's "last minutes" window: 300 s, or half the lifetime when tests configure
/// lifetimes of 300 s or less (otherwise every call would rotate).
fn rotation_window(lifetime: Duration) -> Duration {
    if lifetime > STABLE_ROTATION_WINDOW {
        STABLE_ROTATION_WINDOW
    } else {
        lifetime / 2
    }
}

/// Checks a request's credentials in WeChat's order: grant type, appid, secret.
fn authenticate<'s, 'c>(
    apps: &'s mut HashMap<String, AppState>,
    creds: Credentials<'c>,
) -> Result<(&'c str, &'s mut AppState), WxError> {
    let present = |v: Option<&'c str>| v.filter(|s| !s.is_empty());
    if creds.grant_type != Some(GRANT_TYPE) {
        return Err(WxError::INVALID_GRANT_TYPE);
    }
    let appid = present(creds.appid).ok_or(WxError::APPID_MISSING)?;
    let app = apps.get_mut(appid).ok_or(WxError::INVALID_APPID)?;
    let secret = present(creds.secret).ok_or(WxError::SECRET_MISSING)?;
    // A fake: no need for a constant-time comparison here.
    if secret != app.secret {
        return Err(WxError::INVALID_SECRET);
    }
    Ok((appid, app))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "wxapp";
    const SECRET: &str = "secret";

    fn state(tweak: impl FnOnce(&mut FakeConfig)) -> FakeState {
        let mut cfg = FakeConfig {
            apps: vec![(APP.into(), SECRET.into())],
            ..FakeConfig::default()
        };
        tweak(&mut cfg);
        FakeState::new(&cfg)
    }

    fn creds() -> Credentials<'static> {
        Credentials {
            grant_type: Some(GRANT_TYPE),
            appid: Some(APP),
            secret: Some(SECRET),
        }
    }

    #[test]
    fn previous_token_lives_for_the_overlap_and_the_one_before_dies_at_once() {
        let mut s = state(|c| c.overlap_secs = 10);
        let a = s.token(creds()).unwrap().access_token;
        let b = s.token(creds()).unwrap().access_token;
        assert_eq!(s.validity(&a), Validity::Valid);
        let c = s.token(creds()).unwrap().access_token;
        assert_eq!(s.validity(&a), Validity::Replaced);
        assert_eq!(s.validity(&b), Validity::Valid);
        s.advance(Duration::from_secs(10));
        assert_eq!(s.validity(&b), Validity::Replaced);
        assert_eq!(s.validity(&c), Validity::Valid);
    }

    #[test]
    fn overlap_is_capped_by_the_replaced_tokens_own_expiry() {
        let mut s = state(|c| {
            c.expires_in = 5;
            c.overlap_secs = 300;
        });
        let a = s.token(creds()).unwrap().access_token;
        let _b = s.token(creds()).unwrap();
        s.advance(Duration::from_secs(5));
        assert_eq!(s.validity(&a), Validity::Expired);
    }

    #[test]
    fn token_lengths_are_clamped() {
        for (asked, got) in [(1, 16), (40, 40), (10_000, 512)] {
            let mut s = state(|c| c.token_len = asked);
            assert_eq!(s.token(creds()).unwrap().access_token.len(), got);
        }
    }

    #[test]
    fn rotation_window_is_300s_or_half_a_short_lifetime() {
        assert_eq!(
            rotation_window(Duration::from_secs(7200)),
            Duration::from_secs(300)
        );
        assert_eq!(
            rotation_window(Duration::from_secs(301)),
            Duration::from_secs(300)
        );
        assert_eq!(
            rotation_window(Duration::from_secs(300)),
            Duration::from_secs(150)
        );
        assert_eq!(
            rotation_window(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn forgetting_keeps_living_tokens() {
        let mut s = state(|_| {});
        s.book.limit = 50;
        let idle = s.stable_token(creds(), false).unwrap().access_token;
        let mut minted = Vec::new();
        for _ in 0..100 {
            minted.push(s.token(creds()).unwrap().access_token);
        }
        assert_eq!(s.book.records.len(), 50);
        assert_eq!(s.validity(&idle), Validity::Valid);
        // The two newest /cgi-bin/token tokens are alive, the oldest ones forgotten.
        assert_eq!(s.validity(&minted[99]), Validity::Valid);
        assert_eq!(s.validity(&minted[98]), Validity::Valid);
        assert_eq!(s.validity(&minted[0]), Validity::Unknown);
    }

    #[test]
    fn faults_are_used_in_injection_order() {
        let mut s = state(|_| {});
        s.inject(Fault::Errcode(-1), 2);
        s.inject(Fault::NotJson, 0);
        s.inject(Fault::Drop, 1);
        assert_eq!(s.next_fault(), Some(Fault::Errcode(-1)));
        assert_eq!(s.next_fault(), Some(Fault::Errcode(-1)));
        assert_eq!(s.next_fault(), Some(Fault::Drop));
        assert_eq!(s.next_fault(), None);
    }
}

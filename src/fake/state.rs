//! The fake's bookkeeping: apps, the two token families, JS-SDK tickets, WeCom apps, quotas, the
//! fault queue, call counters and a clock that tests can move forward. No HTTP here, so every
//! rule is unit-tested directly. It also owns the component API's state and the business API's
//! records (`component_state`, `business`), so that one lock covers a token check and its call.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use sha2::{Digest, Sha256};

use super::business::BusinessState;
use super::component_state::ComponentState;
use super::{Endpoint, FakeConfig, Fault, Validity};

/// The only grant type WeChat accepts on both token endpoints.
const GRANT_TYPE: &str = "client_credential";

/// The grant type of the user logins that check an app's secret (`/sns/jscode2session`,
/// `/sns/oauth2/access_token`).
const LOGIN_GRANT_TYPE: &str = "authorization_code";

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
/// answers 40001 like an unknown one. With many apps the bound grows to a few tokens per app
/// (see [`FakeState::new`]).
const REMEMBERED_TOKENS: usize = 100_000;

/// Length of minted tickets: the real jsapi_ticket is 86 characters.
const TICKET_LEN: usize = 86;

/// URL-safe alphabet for minted tokens: real tokens are letters, digits, `_` and `-`.
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// Token lengths the fake will mint. WeChat says to reserve 512 characters; the fake goes up to
/// the longest wxtoken accepts, so tests can prove such a token is served and invalidated. Below
/// 16 a random token would stop being unguessable.
pub(crate) const TOKEN_LEN_RANGE: std::ops::RangeInclusive<usize> =
    16..=crate::upstream::MAX_CREDENTIAL_LEN;

/// A WeChat error answer (HTTP 200 with `errcode` and `errmsg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WxError(pub(crate) i64);

impl WxError {
    pub(crate) const INVALID_CREDENTIAL: WxError = WxError(40001);
    pub(crate) const INVALID_GRANT_TYPE: WxError = WxError(40002);
    pub(crate) const INVALID_OPENID: WxError = WxError(40003);
    pub(crate) const INVALID_MEDIA_TYPE: WxError = WxError(40004);
    pub(crate) const INVALID_MEDIA_SIZE: WxError = WxError(40006);
    pub(crate) const INVALID_MEDIA_ID: WxError = WxError(40007);
    pub(crate) const INVALID_MESSAGE_TYPE: WxError = WxError(40008);
    pub(crate) const INVALID_APPID: WxError = WxError(40013);
    pub(crate) const INVALID_ACCESS_TOKEN: WxError = WxError(40014);
    pub(crate) const INVALID_CODE: WxError = WxError(40029);
    pub(crate) const INVALID_ARGS: WxError = WxError(40097);
    pub(crate) const INVALID_SECRET: WxError = WxError(40125);
    pub(crate) const TOKEN_MISSING: WxError = WxError(41001);
    pub(crate) const APPID_MISSING: WxError = WxError(41002);
    pub(crate) const SECRET_MISSING: WxError = WxError(41004);
    pub(crate) const MEDIA_MISSING: WxError = WxError(41005);
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
            40003 => "invalid openid",
            40004 => "invalid media type",
            40006 => "invalid media size",
            40007 => "invalid media_id",
            40008 => "invalid message type",
            40013 => "invalid appid",
            40014 => "invalid access_token",
            40029 => "invalid code",
            40097 => "invalid args",
            40125 => "invalid appsecret",
            40164 => "invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist",
            40243 => "AppSecret is frozen",
            41001 => "access_token missing",
            41002 => "appid missing",
            41004 => "appsecret missing",
            41005 => "media data missing",
            42001 => "access_token expired",
            43001 => "require GET method",
            43002 => "require POST method",
            45009 => "reach max api daily quota limit",
            45011 => "api minute-quota reach limit",
            47001 => "data format error",
            40170 => "args count exceed count limit",
            48001 => "api unauthorized",
            61003 => "component is not authorized by this account",
            61005 => "component ticket is expired",
            61006 => "component ticket is invalid",
            61009 => "code is invalid",
            61010 => "code is expired",
            61011 => "invalid component",
            61023 => "refresh_token is invalid",
            _ => "fault injected",
        }
    }

    /// The errmsg WeCom (qyapi) sends with this errcode: its parameters are a corpid and a
    /// corpsecret, and a bad secret is a plain "invalid credential" there. Other codes read as
    /// on WeChat.
    pub(crate) fn wecom_errmsg(self) -> &'static str {
        match self.0 {
            40001 => "invalid credential",
            40013 => "invalid corpid",
            41002 => "corpid missing",
            41004 => "corpsecret missing",
            _ => self.errmsg(),
        }
    }
}

/// Which platform an answer speaks for: WeCom words its errmsgs differently and puts
/// `"errcode":0,"errmsg":"ok"` in its success bodies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Platform {
    Wechat,
    Wecom,
}

/// The credentials the fake mints, one family per issuing endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    /// `/cgi-bin/token`
    Token,
    /// `/cgi-bin/stable_token`
    Stable,
    /// WeCom `/cgi-bin/gettoken`
    Wecom,
    /// `/cgi-bin/ticket/getticket` (either type)
    Ticket,
    /// `/cgi-bin/component/api_component_token` (owner: the component appid)
    Component,
    /// `api_query_auth` and `api_authorizer_token` (owner: see `component_state::owner_key`)
    Authorizer,
}

/// The JS-SDK ticket types `getticket` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TicketKind {
    Jsapi,
    WxCard,
}

impl TicketKind {
    pub(crate) fn parse(kind: &str) -> Option<TicketKind> {
        match kind {
            "jsapi" => Some(TicketKind::Jsapi),
            "wx_card" => Some(TicketKind::WxCard),
            _ => None,
        }
    }
}

/// What a successful getticket answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IssuedTicket {
    pub(crate) ticket: String,
    pub(crate) expires_in: u64,
}

/// What a successful token call answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
}

impl Issued {
    /// A token just minted with `m`: it has its whole lifetime left.
    fn minted(access_token: String, m: &Minting) -> Issued {
        Issued {
            access_token,
            expires_in: m.lifetime.as_secs(),
        }
    }
}

/// The credential fields of a token request, as sent (absent and empty are both "missing").
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Credentials<'a> {
    pub(crate) grant_type: Option<&'a str>,
    pub(crate) appid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
}

/// `len` random characters of [`TOKEN_ALPHABET`]. The alphabet has 64 characters, so six bits
/// of a random byte pick one without bias; one fill of random bytes is much cheaper than a
/// random draw per character when a bulk operation makes 100,000 refresh tokens.
pub(super) fn random_token(len: usize) -> String {
    const _: () = assert!(TOKEN_ALPHABET.len() == 64);
    let mut bytes = vec![0u8; len];
    rand::rng().fill(&mut bytes[..]);
    bytes
        .iter()
        .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 63)]))
        .collect()
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
    /// The wall-clock time at `origin`, for the Unix times the component API reports.
    wall_origin: SystemTime,
    offset: Duration,
}

impl Clock {
    fn now(&self) -> Instant {
        Instant::now() + self.offset
    }

    /// `now` in Unix seconds.
    fn unix(&self, now: Instant) -> u64 {
        (self.wall_origin + now.saturating_duration_since(self.origin))
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn day(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_secs() / DAY.as_secs()
    }
}

/// One minted token (or ticket). It is alive until the earlier of its expiry and its kill time.
#[derive(Debug)]
pub(super) struct TokenRecord {
    pub(super) family: Family,
    /// The appid it was minted for (the corpid for WeCom tokens): getticket needs to know whose
    /// token it was given.
    pub(super) owner: String,
    lifetime: Duration,
    expires_at: Instant,
    /// Set when a newer token replaced this one: the moment the replacement takes effect
    /// (now, or now plus the overlap for the previous /cgi-bin/token token or ticket). For a
    /// WeCom token, the moment [`FakeState::expire_wecom_token`] ended it early.
    killed_at: Option<Instant>,
}

impl TokenRecord {
    fn dies_at(&self) -> Instant {
        self.killed_at
            .map_or(self.expires_at, |killed| killed.min(self.expires_at))
    }

    pub(super) fn validity(&self, now: Instant) -> Validity {
        if now < self.dies_at() {
            Validity::Valid
        } else if self.killed_at.is_some_and(|k| k < self.expires_at) {
            Validity::Replaced
        } else {
            Validity::Expired
        }
    }
}

/// Every token the fake remembers, of all token families (they share one namespace, as the probe
/// accepts any of them). Tickets live in a book of their own: a ticket is no access_token.
#[derive(Debug)]
pub(super) struct TokenBook {
    records: HashMap<String, TokenRecord>,
    /// Mint order, oldest first, for forgetting old dead tokens.
    order: VecDeque<String>,
    /// How many tokens to remember ([`REMEMBERED_TOKENS`]; smaller in unit tests).
    pub(super) limit: usize,
}

impl TokenBook {
    /// An empty book that remembers up to `limit` tokens.
    pub(super) fn new(limit: usize) -> TokenBook {
        TokenBook {
            records: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    pub(super) fn mint(
        &mut self,
        family: Family,
        owner: &str,
        now: Instant,
        lifetime: Duration,
        len: usize,
    ) -> String {
        let token = loop {
            let candidate = random_token(len);
            // Collisions are astronomically unlikely (>= 96 random bits), but a repeated token
            // would corrupt the bookkeeping, so rule it out rather than argue about it.
            if !self.records.contains_key(&candidate) {
                break candidate;
            }
        };
        self.records.insert(
            token.clone(),
            TokenRecord {
                family,
                owner: owner.to_owned(),
                lifetime,
                // The fake mints absurd lifetimes on request (to test the server's checks):
                // saturate at a century instead of overflowing the clock.
                expires_at: now
                    .checked_add(lifetime)
                    .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400)),
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
    pub(super) fn kill(&mut self, token: &str, at: Instant) {
        if let Some(record) = self.records.get_mut(token) {
            record.killed_at = Some(record.killed_at.map_or(at, |k| k.min(at)));
        }
    }

    pub(super) fn validity(&self, token: &str, now: Instant) -> Validity {
        self.records
            .get(token)
            .map_or(Validity::Unknown, |r| r.validity(now))
    }

    pub(super) fn get(&self, token: &str) -> Option<&TokenRecord> {
        self.records.get(token)
    }

    /// Makes `new` the current credential of its slot: the one it replaces stays valid for
    /// `overlap` (capped by its own expiry), and the one before that dies at once. This is
    /// WeChat's rule for `/cgi-bin/token` tokens and for tickets alike.
    pub(super) fn rotate(&mut self, slot: &mut Slot, new: String, now: Instant, overlap: Duration) {
        if let Some(older) = slot.prev.take() {
            self.kill(&older, now);
        }
        if let Some(previous) = slot.current.take() {
            self.kill(&previous, now + overlap);
            slot.prev = Some(previous);
        }
        slot.current = Some(new);
    }

    /// A token mint of `family` for `owner` with the settings and time of `m`.
    pub(super) fn mint_with(&mut self, family: Family, owner: &str, m: &Minting) -> String {
        self.mint(family, owner, m.now, m.lifetime, m.token_len)
    }

    /// `current` answered again, with the time it has left, while it is alive and `keep` (of
    /// its time left and its lifetime) holds.
    fn reuse(
        &self,
        current: Option<&str>,
        now: Instant,
        keep: impl FnOnce(Duration, Duration) -> bool,
    ) -> Option<Issued> {
        let current = current?;
        let (left, lifetime) = self.remaining(current, now)?;
        keep(left, lifetime).then(|| Issued {
            access_token: current.to_owned(),
            expires_in: left.as_secs(),
        })
    }

    /// Time left and total lifetime of a token that is still alive.
    pub(super) fn remaining(&self, token: &str, now: Instant) -> Option<(Duration, Duration)> {
        let record = self.records.get(token)?;
        let left = record.dies_at().checked_duration_since(now)?;
        (!left.is_zero()).then_some((left, record.lifetime))
    }
}

/// A credential that rotates with an overlap: the current one and the one it replaced.
#[derive(Debug, Default)]
pub(super) struct Slot {
    pub(super) current: Option<String>,
    pub(super) prev: Option<String>,
}

/// One configured app and what it has used today.
#[derive(Debug)]
struct AppState {
    secret: String,
    /// /cgi-bin/token tokens: the latest and the one it replaced (alive during the overlap).
    token: Slot,
    /// Latest /cgi-bin/stable_token token, and the one it rotated out (alive until its expiry).
    stable: Option<String>,
    stable_prev: Option<String>,
    /// JS-SDK tickets per type; they rotate like /cgi-bin/token tokens.
    tickets: HashMap<TicketKind, Slot>,
    quota_used: u32,
    forced_today: u32,
    last_forced: Option<Instant>,
    minted: u64,
    fetched: u64,
    tickets_minted: u64,
}

impl AppState {
    fn new(secret: &str) -> AppState {
        AppState {
            secret: secret.to_owned(),
            token: Slot::default(),
            stable: None,
            stable_prev: None,
            tickets: HashMap::new(),
            quota_used: 0,
            forced_today: 0,
            last_forced: None,
            minted: 0,
            fetched: 0,
            tickets_minted: 0,
        }
    }
}

/// One WeCom app, i.e. one (corpid, corpsecret) pair: WeCom keeps a token per app, not per corp.
#[derive(Debug, Default)]
struct WecomApp {
    /// The token handed out while it lives. Never replaced before it dies: WeCom answers the
    /// same token until it expires (or is ended early), so there is no overlap to model.
    token: Option<String>,
    minted: u64,
}

/// The clock reading and the minting settings that a component call needs from the rest of the
/// state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Minting {
    pub(crate) now: Instant,
    /// The same moment in Unix seconds, on the fake clock.
    pub(crate) unix_now: u64,
    pub(crate) lifetime: Duration,
    pub(crate) overlap: Duration,
    pub(crate) token_len: usize,
}

/// Counters of requests received per endpoint.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Calls {
    pub(crate) token: u64,
    pub(crate) stable_token: u64,
    pub(crate) probe: u64,
    pub(crate) ticket: u64,
    pub(crate) wecom_token: u64,
    /// The business API, every path together (see `business` for the calls per path).
    pub(crate) api: u64,
}

/// All mutable state of one fake server. Lives behind a std `Mutex`: every method is short and
/// synchronous, and no `.await` happens while the lock is held.
#[derive(Debug)]
pub(crate) struct FakeState {
    clock: Clock,
    day: u64,
    apps: HashMap<String, AppState>,
    /// corpid -> corpsecret -> app. Nested rather than keyed by the pair so that an unknown
    /// corpid (40013) can be told from a wrong secret (40001).
    wecom: HashMap<String, HashMap<String, WecomApp>>,
    book: TokenBook,
    tickets: TokenBook,
    expires_in: u64,
    overlap: Duration,
    token_len: usize,
    daily_quota: u32,
    faults: VecDeque<(Fault, u32)>,
    /// Faults for one endpoint only, used before the shared queue.
    targeted_faults: HashMap<Endpoint, VecDeque<(Fault, u32)>>,
    calls: Calls,
    /// Calls (all but the probe's) being answered now, and the most there ever were at once.
    in_flight: u64,
    peak_in_flight: u64,
    /// The same per endpoint (now, most at once): a client's concurrency on one endpoint,
    /// such as code exchanges, without the calls it makes alongside.
    in_flight_by_endpoint: HashMap<Endpoint, (u64, u64)>,
    /// How long every call but the probe's waits before it is answered.
    pub(crate) answer_delay: Duration,
    /// Third-party platforms (the component API).
    component: ComponentState,
    /// The business API's requests, media, messages and used login codes.
    business: BusinessState,
    /// The calls of `reported`'s endpoints.
    pub(crate) reported: super::reported::ReportedCalls,
    /// WeCom service providers' suites, corps and provider tokens.
    wecom_suites: super::wecom_suite_state::WecomSuiteState,
}

impl FakeState {
    pub(crate) fn new(cfg: &FakeConfig) -> FakeState {
        let origin = Instant::now();
        let apps = cfg
            .apps
            .iter()
            .map(|(appid, secret)| (appid.clone(), AppState::new(secret)))
            .collect();
        let mut wecom: HashMap<String, HashMap<String, WecomApp>> = HashMap::new();
        for (corpid, secret) in &cfg.wecom_apps {
            wecom
                .entry(corpid.clone())
                .or_default()
                .insert(secret.clone(), WecomApp::default());
        }
        // Each app keeps up to four tokens alive (a /cgi-bin/token pair, a stable pair); the bound
        // leaves room for twice that. With
        // that many living tokens in a book at its bound, every mint would scan the whole book
        // for a dead one to forget: 100,000 apps made each mint cost milliseconds under the lock.
        let limit = REMEMBERED_TOKENS.max(cfg.apps.len().saturating_mul(8));
        let book = || TokenBook::new(limit);
        FakeState {
            clock: Clock {
                origin,
                wall_origin: SystemTime::now(),
                offset: Duration::ZERO,
            },
            day: 0,
            apps,
            wecom,
            book: book(),
            tickets: book(),
            expires_in: cfg.expires_in.max(1),
            overlap: Duration::from_secs(cfg.overlap_secs),
            token_len: cfg
                .token_len
                .clamp(*TOKEN_LEN_RANGE.start(), *TOKEN_LEN_RANGE.end()),
            daily_quota: cfg.daily_quota,
            faults: VecDeque::new(),
            targeted_faults: HashMap::new(),
            calls: Calls::default(),
            in_flight: 0,
            peak_in_flight: 0,
            in_flight_by_endpoint: HashMap::new(),
            answer_delay: cfg.answer_delay,
            component: ComponentState::new(&cfg.platforms, limit, cfg.ticket_push_interval),
            business: BusinessState::default(),
            reported: Default::default(),
            wecom_suites: super::wecom_suite_state::WecomSuiteState::new(
                &cfg.wecom_suites,
                &cfg.wecom_providers,
                cfg.expires_in,
            ),
        }
    }

    /// WeCom service providers' side, and the fake clock's now.
    /// WeCom's service-provider calls by endpoint, for `/_fake/counters`; `None` for a fake
    /// that knows no suite.
    pub(crate) fn wecom_calls(&self) -> Option<serde_json::Value> {
        self.wecom_suites.calls_json()
    }

    pub(crate) fn wecom_suites(
        &mut self,
    ) -> (&mut super::wecom_suite_state::WecomSuiteState, Instant) {
        (&mut self.wecom_suites, self.clock.now())
    }

    /// Lets `gettoken` take (`corpid`, `secret`), as a customized app's permanent code is, or
    /// stops it (`false`).
    pub(crate) fn set_wecom_app(&mut self, corpid: &str, secret: &str, on: bool) {
        let corp = self.wecom.entry(corpid.to_owned()).or_default();
        if on {
            corp.entry(secret.to_owned()).or_default();
        } else {
            corp.remove(secret);
        }
    }

    /// The business API's bookkeeping.
    pub(crate) fn business(&mut self) -> &mut BusinessState {
        &mut self.business
    }

    /// The business API's bookkeeping, to read.
    pub(crate) fn business_ref(&self) -> &BusinessState {
        &self.business
    }

    /// The fake clock's time in Unix seconds (the `created_at` of uploaded media, say).
    pub(crate) fn unix_now(&self) -> u64 {
        self.clock.unix(self.clock.now())
    }

    /// Whose token it is: the appid (the corpid for a WeCom token, the authorizer's key for an
    /// authorizer token, the component appid for a component token), dead or alive.
    pub(crate) fn token_owner(&self, token: &str) -> Option<&str> {
        self.book
            .get(token)
            .or_else(|| self.component.book().get(token))
            .map(|record| record.owner.as_str())
    }

    /// The component side and the clock reading and settings its calls need.
    pub(crate) fn component(&mut self) -> (&mut ComponentState, Minting) {
        let minting = self.minting();
        (&mut self.component, minting)
    }

    /// The clock reading and settings a mint needs, now.
    fn minting(&self) -> Minting {
        let now = self.clock.now();
        Minting {
            now,
            unix_now: self.clock.unix(now),
            lifetime: Duration::from_secs(self.expires_in),
            overlap: self.overlap,
            token_len: self.token_len,
        }
    }

    /// The component side, to read, and the fake clock's time.
    pub(crate) fn component_ref(&self) -> (&ComponentState, Instant) {
        (&self.component, self.clock.now())
    }

    // ---- counters, faults, settings -------------------------------------------------------

    pub(crate) fn count(&mut self, ep: Endpoint) {
        let counter = match ep {
            Endpoint::Token => &mut self.calls.token,
            Endpoint::StableToken => &mut self.calls.stable_token,
            Endpoint::Probe => &mut self.calls.probe,
            Endpoint::Ticket => &mut self.calls.ticket,
            Endpoint::WecomToken => &mut self.calls.wecom_token,
            Endpoint::Api => &mut self.calls.api,
            component => return self.component.count(component),
        };
        *counter += 1;
    }

    pub(crate) fn calls(&self) -> Calls {
        self.calls
    }

    /// A call to `ep` started being answered.
    pub(crate) fn call_began(&mut self, ep: Endpoint) {
        self.in_flight = self.in_flight.saturating_add(1);
        self.peak_in_flight = self.peak_in_flight.max(self.in_flight);
        let (now, peak) = self.in_flight_by_endpoint.entry(ep).or_default();
        *now = now.saturating_add(1);
        *peak = (*peak).max(*now);
    }

    /// ...and ended (answered, or dropped by the client).
    pub(crate) fn call_ended(&mut self, ep: Endpoint) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if let Some((now, _)) = self.in_flight_by_endpoint.get_mut(&ep) {
            *now = now.saturating_sub(1);
        }
    }

    /// The most calls to `ep` that were being answered at once since the start.
    pub(crate) fn peak_in_flight_at(&self, ep: Endpoint) -> u64 {
        self.in_flight_by_endpoint
            .get(&ep)
            .map_or(0, |(_, peak)| *peak)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
    }

    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight
    }

    pub(crate) fn inject(&mut self, fault: Fault, times: u32) {
        if times > 0 {
            self.faults.push_back((fault, times));
        }
    }

    /// Faults for that endpoint only: used before any in the shared queue.
    pub(crate) fn inject_at(&mut self, ep: Endpoint, fault: Fault, times: u32) {
        if times > 0 {
            self.targeted_faults
                .entry(ep)
                .or_default()
                .push_back((fault, times));
        }
    }

    pub(crate) fn clear_faults(&mut self) {
        self.faults.clear();
        self.targeted_faults.clear();
    }

    /// The fault for a call to `ep`: the oldest aimed at it, else (for the app credential
    /// endpoints, which share it) the oldest in the shared queue.
    pub(crate) fn next_fault_for(&mut self, ep: Endpoint) -> Option<Fault> {
        if let Some(fault) = self.targeted_faults.get_mut(&ep).and_then(take_fault) {
            return Some(fault);
        }
        let shared = matches!(
            ep,
            Endpoint::Token | Endpoint::StableToken | Endpoint::Ticket | Endpoint::WecomToken
        );
        if shared {
            self.next_fault()
        } else {
            None
        }
    }

    /// The fault for this call, if any: the oldest injection that still has uses left.
    pub(crate) fn next_fault(&mut self) -> Option<Fault> {
        take_fault(&mut self.faults)
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

    pub(crate) fn tickets_minted(&self, appid: &str) -> u64 {
        self.apps.get(appid).map_or(0, |a| a.tickets_minted)
    }

    pub(crate) fn wecom_minted(&self, corpid: &str, secret: &str) -> u64 {
        self.wecom_app(corpid, secret).map_or(0, |w| w.minted)
    }

    /// `(appid, minted)` for every configured app, sorted by appid.
    pub(crate) fn minted_all(&self) -> Vec<(String, u64)> {
        self.per_app(|app| app.minted)
    }

    /// `(appid, tickets minted)` for every configured app, sorted by appid.
    pub(crate) fn tickets_minted_all(&self) -> Vec<(String, u64)> {
        self.per_app(|app| app.tickets_minted)
    }

    fn per_app(&self, counter: impl Fn(&AppState) -> u64) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .apps
            .iter()
            .map(|(appid, app)| (appid.clone(), counter(app)))
            .collect();
        all.sort();
        all
    }

    pub(crate) fn current_token(&self, appid: &str) -> Option<String> {
        self.apps.get(appid)?.token.current.clone()
    }

    pub(crate) fn current_stable_token(&self, appid: &str) -> Option<String> {
        self.apps.get(appid)?.stable.clone()
    }

    pub(crate) fn current_ticket(&self, appid: &str, kind: &str) -> Option<String> {
        let kind = TicketKind::parse(kind)?;
        self.apps.get(appid)?.tickets.get(&kind)?.current.clone()
    }

    /// The token WeCom would answer for that app now: `None` once it has died, since the next
    /// gettoken mints a new one.
    pub(crate) fn current_wecom_token(&self, corpid: &str, secret: &str) -> Option<String> {
        let token = self.wecom_app(corpid, secret)?.token.as_deref()?;
        let alive = self.book.validity(token, self.clock.now()) == Validity::Valid;
        alive.then(|| token.to_owned())
    }

    /// What the probe would say, as a [`Validity`]. A WeCom token ended early reads as
    /// `Expired`: nothing replaced it, WeCom just ended its life (the probe answers 40014).
    /// Component and authorizer tokens are known too.
    pub(crate) fn validity(&self, token: &str) -> Validity {
        let now = self.clock.now();
        let validity = match self.book.validity(token, now) {
            Validity::Unknown => self.component.validity(token, now),
            known => known,
        };
        match self.book.get(token) {
            Some(r) if r.family == Family::Wecom && validity == Validity::Replaced => {
                Validity::Expired
            }
            _ => validity,
        }
    }

    /// Kills a token now, of whatever family, as a fetch behind wxtoken's back would
    /// (`reported`'s control): the probe answers it as replaced (40001; WeCom's as ended
    /// early, 40014) and the next call of its token endpoint mints a new one. False when the
    /// fake never minted it (or forgot it).
    pub(crate) fn kill_token(&mut self, token: &str) -> bool {
        let now = self.clock.now();
        let book = if self.book.get(token).is_some() {
            &mut self.book
        } else if self.component.book().get(token).is_some() {
            self.component.book_mut()
        } else {
            return false;
        };
        book.kill(token, now);
        true
    }

    pub(crate) fn ticket_validity(&self, ticket: &str) -> Validity {
        self.tickets.validity(ticket, self.clock.now())
    }

    /// `/cgi-bin/get_api_domain_ip`, which WeChat and WeCom both serve: `Ok` for a living
    /// token, else the errcode, with the platform whose wording to use. WeCom's dead tokens get
    /// WeCom's codes: 42001 when expired, 40014 when ended early. Authorizer tokens are an
    /// account's access tokens and are answered like app tokens; so are component tokens, which
    /// makes the probe the fake's validity check for every token it minted.
    pub(crate) fn probe(&self, token: &str) -> (Platform, Result<(), WxError>) {
        let now = self.clock.now();
        let record = self
            .book
            .get(token)
            .or_else(|| self.component.book().get(token));
        let Some(record) = record else {
            return (Platform::Wechat, Err(WxError::INVALID_CREDENTIAL));
        };
        let platform = if record.family == Family::Wecom {
            Platform::Wecom
        } else {
            Platform::Wechat
        };
        let answer = match (record.validity(now), platform) {
            (Validity::Valid, _) => Ok(()),
            (Validity::Expired, _) => Err(WxError::TOKEN_EXPIRED),
            (Validity::Replaced, Platform::Wecom) => Err(WxError::INVALID_ACCESS_TOKEN),
            (Validity::Replaced | Validity::Unknown, _) => Err(WxError::INVALID_CREDENTIAL),
        };
        (platform, answer)
    }

    // ---- the two token endpoints ----------------------------------------------------------

    /// `GET /cgi-bin/token`: every success mints a new token. The previous one keeps working for
    /// the overlap (capped by its own expiry); the one before it dies at once.
    pub(crate) fn token(&mut self, creds: Credentials<'_>) -> Result<Issued, WxError> {
        let m = self.minting();
        self.roll_day(m.now);
        let (appid, app) = authenticate(&mut self.apps, creds, GRANT_TYPE)?;
        if app.quota_used >= self.daily_quota {
            return Err(WxError::DAILY_QUOTA);
        }
        app.quota_used += 1;

        let token = self.book.mint_with(Family::Token, appid, &m);
        self.book
            .rotate(&mut app.token, token.clone(), m.now, self.overlap);
        app.minted += 1;
        app.fetched += 1;
        tracing::debug!(appid, token = %fingerprint(&token), expires_in = self.expires_in, "fake minted access_token");
        Ok(Issued::minted(token, &m))
    }

    /// `POST /cgi-bin/stable_token`: the same token while it has more than the rotation window
    /// left, a new one in the window (the old one lives on until its expiry), or with
    /// `force_refresh` a new one that kills the old at once, within the force-refresh limits.
    pub(crate) fn stable_token(
        &mut self,
        creds: Credentials<'_>,
        force_refresh: bool,
    ) -> Result<Issued, WxError> {
        let m = self.minting();
        let now = m.now;
        self.roll_day(now);
        let (appid, app) = authenticate(&mut self.apps, creds, GRANT_TYPE)?;

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
        } else if let Some(current) =
            self.book
                .reuse(app.stable.as_deref(), now, |left, lifetime| {
                    left > rotation_window(lifetime)
                })
        {
            app.fetched += 1;
            return Ok(current);
        }

        let token = self.book.mint_with(Family::Stable, appid, &m);
        // In normal mode the rotated-out token is left to die at its own expiry.
        app.stable_prev = app.stable.replace(token.clone());
        app.minted += 1;
        app.fetched += 1;
        tracing::debug!(appid, token = %fingerprint(&token), force_refresh, expires_in = self.expires_in, "fake minted stable access_token");
        Ok(Issued::minted(token, &m))
    }

    /// The credential check of the user logins (`/sns/jscode2session`,
    /// `/sns/oauth2/access_token`): the token endpoint's rules and order, with their grant
    /// type, `authorization_code`. Nothing is minted or counted against the quota here.
    pub(crate) fn check_login<'c>(&mut self, creds: Credentials<'c>) -> Result<&'c str, WxError> {
        authenticate(&mut self.apps, creds, LOGIN_GRANT_TYPE).map(|(appid, _)| appid)
    }

    // ---- JS-SDK tickets ---------------------------------------------------------------------

    /// `GET /cgi-bin/ticket/getticket`. The access_token is checked first, with the probe's
    /// rules (a WeCom token means nothing to WeChat: 40001), then the type (40097). Every success
    /// mints a new ticket for (appid, type): the previous one overlaps like a replaced
    /// /cgi-bin/token token and the one before it dies at once. A ticket does not depend on the
    /// token it was fetched with: it lives on when that token is replaced. An authorizer token
    /// gets the account's tickets (per platform); a component token is no account's token.
    pub(crate) fn ticket(
        &mut self,
        access_token: Option<&str>,
        kind: Option<&str>,
    ) -> Result<IssuedTicket, WxError> {
        let now = self.clock.now();
        let token = present(access_token).ok_or(WxError::TOKEN_MISSING)?;
        let record = self
            .book
            .get(token)
            .or_else(|| self.component.book().get(token))
            .filter(|r| !matches!(r.family, Family::Wecom | Family::Component))
            .ok_or(WxError::INVALID_CREDENTIAL)?;
        match record.validity(now) {
            Validity::Valid => {}
            Validity::Expired => return Err(WxError::TOKEN_EXPIRED),
            Validity::Replaced | Validity::Unknown => return Err(WxError::INVALID_CREDENTIAL),
        }
        let kind = kind
            .and_then(TicketKind::parse)
            .ok_or(WxError::INVALID_ARGS)?;
        let appid = record.owner.clone();
        let family = record.family;
        // Apps and authorizers are never removed, so the owner of a living token is always known.
        let (slot, minted) = if family == Family::Authorizer {
            self.component.ticket_slot(&appid, kind)
        } else {
            self.apps.get_mut(&appid).map(|app| {
                (
                    app.tickets.entry(kind).or_default(),
                    &mut app.tickets_minted,
                )
            })
        }
        .ok_or(WxError::INVALID_CREDENTIAL)?;

        let lifetime = Duration::from_secs(self.expires_in);
        let ticket = self
            .tickets
            .mint(Family::Ticket, &appid, now, lifetime, TICKET_LEN);
        self.tickets.rotate(slot, ticket.clone(), now, self.overlap);
        *minted += 1;
        tracing::debug!(appid, ?kind, ticket = %fingerprint(&ticket), expires_in = self.expires_in, "fake minted ticket");
        Ok(IssuedTicket {
            ticket,
            expires_in: self.expires_in,
        })
    }

    // ---- WeCom --------------------------------------------------------------------------------

    /// WeCom `GET /cgi-bin/gettoken`, checked in WeCom's order: corpid, then secret. While the
    /// app's token lives, every call answers that same token (WeCom: "repeated calls within the
    /// validity period return the same result"), with the time it has left as `expires_in`: a
    /// client that refreshes early must not take a reused token for a fresh one. Only once it
    /// has expired, or was ended by [`FakeState::expire_wecom_token`], is a new one minted.
    pub(crate) fn wecom_token(
        &mut self,
        corpid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<Issued, WxError> {
        let m = self.minting();
        let corpid = present(corpid).ok_or(WxError::APPID_MISSING)?;
        let corp = self.wecom.get_mut(corpid).ok_or(WxError::INVALID_APPID)?;
        let secret = present(secret).ok_or(WxError::SECRET_MISSING)?;
        // A fake: no need for a constant-time comparison here.
        let app = corp.get_mut(secret).ok_or(WxError::INVALID_CREDENTIAL)?;

        if let Some(current) = self.book.reuse(app.token.as_deref(), m.now, |_, _| true) {
            return Ok(current);
        }
        let token = self.book.mint_with(Family::Wecom, corpid, &m);
        app.token = Some(token.clone());
        app.minted += 1;
        // The secret picks the app but is never logged; the token only as a fingerprint.
        tracing::debug!(corpid, token = %fingerprint(&token), expires_in = self.expires_in, "fake minted WeCom access_token");
        Ok(Issued::minted(token, &m))
    }

    /// Ends that WeCom app's current token now, as WeCom may do "for operational reasons": the
    /// probe answers 40014 for it and the next gettoken mints a new one. A token that has
    /// already expired stays expired (42001).
    pub(crate) fn expire_wecom_token(&mut self, corpid: &str, secret: &str) {
        let now = self.clock.now();
        let current = self
            .wecom
            .get(corpid)
            .and_then(|corp| corp.get(secret))
            .and_then(|app| app.token.as_deref());
        if let Some(token) = current {
            self.book.kill(token, now);
            tracing::debug!(corpid, token = %fingerprint(token), "fake ended WeCom access_token early");
        }
    }

    fn wecom_app(&self, corpid: &str, secret: &str) -> Option<&WecomApp> {
        self.wecom.get(corpid)?.get(secret)
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

/// Uses up one use of the oldest fault in a queue.
fn take_fault(queue: &mut VecDeque<(Fault, u32)>) -> Option<Fault> {
    let (fault, left) = queue.front_mut()?;
    let fault = fault.clone();
    *left -= 1;
    if *left == 0 {
        queue.pop_front();
    }
    Some(fault)
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

/// A request parameter that is there and not empty: WeChat treats empty as missing.
pub(super) fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// Checks a request's credentials in WeChat's order: grant type, appid, secret.
fn authenticate<'s, 'c>(
    apps: &'s mut HashMap<String, AppState>,
    creds: Credentials<'c>,
    grant_type: &str,
) -> Result<(&'c str, &'s mut AppState), WxError> {
    if creds.grant_type != Some(grant_type) {
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

    const CORP: &str = "wwcorp";
    const CORP_SECRET: &str = "corp-secret";

    fn wecom_state(tweak: impl FnOnce(&mut FakeConfig)) -> FakeState {
        state(|c| {
            c.wecom_apps = vec![(CORP.into(), CORP_SECRET.into())];
            tweak(c);
        })
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
        for (asked, got) in [
            (1, 16),
            (40, 40),
            (10_000, crate::upstream::MAX_CREDENTIAL_LEN),
        ] {
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
    fn tickets_rotate_like_tokens_per_type() {
        let mut s = state(|c| c.overlap_secs = 10);
        let t = s.token(creds()).unwrap().access_token;
        let mut jsapi = || s.ticket(Some(&t), Some("jsapi")).unwrap().ticket;
        let (a, b, c) = (jsapi(), jsapi(), jsapi());
        let card = s.ticket(Some(&t), Some("wx_card")).unwrap().ticket;
        assert_eq!(s.ticket_validity(&a), Validity::Replaced);
        assert_eq!(s.ticket_validity(&b), Validity::Valid);
        assert_eq!(s.ticket_validity(&card), Validity::Valid);
        s.advance(Duration::from_secs(10));
        assert_eq!(s.ticket_validity(&b), Validity::Replaced);
        assert_eq!(s.ticket_validity(&c), Validity::Valid);
        assert_eq!(s.tickets_minted(APP), 4);
    }

    #[test]
    fn getticket_checks_the_token_before_the_type() {
        let mut s = wecom_state(|_| {});
        let wecom = s
            .wecom_token(Some(CORP), Some(CORP_SECRET))
            .unwrap()
            .access_token;
        assert_eq!(s.ticket(None, Some("x")), Err(WxError::TOKEN_MISSING));
        assert_eq!(
            s.ticket(Some("nope"), Some("x")),
            Err(WxError::INVALID_CREDENTIAL)
        );
        assert_eq!(
            s.ticket(Some(&wecom), Some("jsapi")),
            Err(WxError::INVALID_CREDENTIAL)
        );
        let t = s.token(creds()).unwrap().access_token;
        assert_eq!(s.ticket(Some(&t), None), Err(WxError::INVALID_ARGS));
        assert_eq!(s.tickets_minted(APP), 0);
    }

    #[test]
    fn wecom_token_is_reused_until_it_dies() {
        let mut s = wecom_state(|c| c.expires_in = 10);
        let get = |s: &mut FakeState| s.wecom_token(Some(CORP), Some(CORP_SECRET)).unwrap();
        let a = get(&mut s);
        s.advance(Duration::from_secs(4));
        let again = get(&mut s);
        assert_eq!(again.access_token, a.access_token);
        assert!(again.expires_in <= 6);
        s.advance(Duration::from_secs(6));
        let b = get(&mut s);
        assert_ne!(b.access_token, a.access_token);
        assert_eq!(b.expires_in, 10);

        s.expire_wecom_token(CORP, CORP_SECRET);
        assert_eq!(s.validity(&b.access_token), Validity::Expired);
        assert_eq!(
            s.probe(&b.access_token),
            (Platform::Wecom, Err(WxError::INVALID_ACCESS_TOKEN))
        );
        assert_eq!(
            s.probe(&a.access_token),
            (Platform::Wecom, Err(WxError::TOKEN_EXPIRED))
        );
        assert_ne!(get(&mut s).access_token, b.access_token);
        assert_eq!(s.wecom_minted(CORP, CORP_SECRET), 3);
    }

    #[test]
    fn peak_in_flight_keeps_the_most_calls_at_once() {
        let mut s = state(|_| {});
        let ep = Endpoint::Token;
        s.call_began(ep);
        s.call_began(ep);
        s.call_ended(ep);
        s.call_began(ep);
        s.call_began(Endpoint::QueryAuth);
        assert_eq!((s.in_flight(), s.peak_in_flight()), (3, 3));
        assert_eq!(s.peak_in_flight_at(ep), 2);
        assert_eq!(s.peak_in_flight_at(Endpoint::QueryAuth), 1);
        assert_eq!(s.peak_in_flight_at(Endpoint::Ticket), 0);
        for _ in 0..4 {
            s.call_ended(ep);
        }
        s.call_began(ep);
        assert_eq!((s.in_flight(), s.peak_in_flight()), (1, 3));
        assert_eq!(s.peak_in_flight_at(ep), 2);
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

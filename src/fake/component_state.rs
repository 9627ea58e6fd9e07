//! The fake's third-party-platform (component) rules: platforms, verify tickets, component
//! tokens, pre-auth and authorization codes, authorizers with their refresh tokens and access
//! tokens, and the component call counters. No HTTP here, so every rule is unit-tested directly.
//!
//! What it models, from `shared/open-platform.md` section 1: a ticket lives 12 h and
//! `api_component_token` takes the newest one or the one before it; every component token or
//! authorizer token minted replaces the previous one like a `/cgi-bin/token` token (it overlaps,
//! the one before dies); pre-auth and authorization codes work once; re-authorizing gives the
//! account a new refresh token and kills its access tokens; a refresh token stops working when
//! the account leaves, re-authorizes, or WeChat resets it (61023); `api_get_authorizer_list`
//! lists the accounts currently authorized, 500 at most per page, with their refresh tokens,
//! which read as empty until `api_query_auth` was called once for the account.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::push::PushRecord;
use super::state::{present, random_token, Family, Minting, Slot, TicketKind, TokenBook, WxError};
use super::{Endpoint, FakePlatform, Validity};

/// A verify ticket is valid for 12 hours after it was minted.
pub(super) const TICKET_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Tickets remembered per platform, newest first: the newest two are accepted, older ones are
/// kept only to tell "expired" (61005) from "invalid" (61006).
const TICKETS_REMEMBERED: usize = 32;

/// A pre-auth code's life (the current document says 1800 s; an older example shows 600).
pub(super) const PREAUTH_CODE_LIFETIME: Duration = Duration::from_secs(1800);

/// An authorization code's life (`AuthorizationCodeExpiredTime` is 10 minutes ahead).
pub(super) const AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Codes are remembered this long past their expiry to answer 61010 rather than 61009.
const EXPIRED_CODES_REMEMBERED: Duration = Duration::from_secs(3600);

/// `api_get_authorizer_list` answers at most this many per page (40170 beyond).
pub(super) const LIST_MAX_COUNT: u64 = 500;

/// The permission-set ids generated authorizers grant: messages, users, accounts.
const BULK_FUNC_INFO: [u32; 3] = [1, 2, 4];

/// Pushes remembered for tests, oldest forgotten first.
const PUSHES_REMEMBERED: usize = 1000;

/// Refresh tokens and codes: a fixed prefix as WeChat's have, then random characters.
const RANDOM_PART_LEN: usize = 43;

impl WxError {
    pub(crate) const NOT_AUTHORIZED: WxError = WxError(61003);
    pub(crate) const TICKET_EXPIRED: WxError = WxError(61005);
    pub(crate) const TICKET_INVALID: WxError = WxError(61006);
    pub(crate) const CODE_INVALID: WxError = WxError(61009);
    pub(crate) const CODE_EXPIRED: WxError = WxError(61010);
    pub(crate) const INVALID_COMPONENT: WxError = WxError(61011);
    pub(crate) const REFRESH_TOKEN_INVALID: WxError = WxError(61023);
    pub(crate) const COUNT_LIMIT: WxError = WxError(40170);
}

/// The appid of generated authorizer `index` ([`super::FakeWechat::bulk_authorize`]):
/// `wxauth` and the index in 12 digits, 18 characters like a real appid.
pub fn bulk_authorizer_appid(index: u64) -> String {
    format!("wxauth{index:012}")
}

/// The owner recorded on an authorizer's tokens: one account may authorize several platforms,
/// and each pair has tokens (and JS-SDK tickets) of its own.
pub(super) fn owner_key(component_appid: &str, authorizer_appid: &str) -> String {
    format!("{component_appid}/{authorizer_appid}")
}

/// What a control operation on the component side can get wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown component appid {0:?}")]
    UnknownComponent(String),
    #[error("component has no authorizer {0:?}")]
    UnknownAuthorizer(String),
    #[error("an authorizer appid must be 1 to 64 letters, digits, '_' or '-'")]
    BadAppid,
    #[error("the pre-auth code is unknown, used or expired")]
    PreAuthCode,
    #[error("component {0:?} has no event URL to push to")]
    NoEventUrl(String),
}

/// Where an authorizer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorizerState {
    /// Authorized; its refresh token works.
    Authorized,
    /// Still authorized and listed with its refresh token, but that token answers 61023: only
    /// a new authorization by the merchant helps.
    NeedsReauth,
    /// Unauthorized (left the platform): not listed, its refresh token answers 61023.
    Left,
}

/// One account that authorized a platform.
#[derive(Debug)]
struct Authorizer {
    appid: String,
    refresh_token: String,
    state: AuthorizerState,
    func_info: Vec<u32>,
    /// Unix seconds on the fake clock.
    auth_time: u64,
    /// `api_query_auth` was called since the account first authorized; until then WeChat shows
    /// an empty refresh token in `api_get_authorizer_info` and the list.
    queried: bool,
    token: Slot,
    tokens_minted: u64,
    tickets: HashMap<TicketKind, Slot>,
    tickets_minted: u64,
}

impl Authorizer {
    fn shown_refresh_token(&self) -> &str {
        if self.queried {
            &self.refresh_token
        } else {
            ""
        }
    }

    /// Kills the account's access tokens at once (re-authorization, unauthorization).
    fn kill_tokens(&mut self, book: &mut TokenBook, now: Instant) {
        for token in [self.token.current.take(), self.token.prev.take()]
            .into_iter()
            .flatten()
        {
            book.kill(&token, now);
        }
    }
}

#[derive(Debug)]
struct VerifyTicket {
    value: String,
    expires_at: Instant,
}

#[derive(Debug)]
struct Code {
    /// The authorizer it was issued for (authorization codes only).
    authorizer: String,
    expires_at: Instant,
}

/// One configured platform.
#[derive(Debug)]
struct Component {
    secret: String,
    msg_token: String,
    encoding_aes_key: String,
    event_url: Option<String>,
    /// Newest first.
    tickets: VecDeque<VerifyTicket>,
    token: Slot,
    tokens_minted: u64,
    preauth_codes: HashMap<String, Code>,
    auth_codes: HashMap<String, Code>,
    /// In order of first authorization: the list's stable order.
    authorizers: Vec<Authorizer>,
    index: HashMap<String, usize>,
    /// The next index [`ComponentState::bulk_authorize`] tries.
    bulk_next: u64,
}

impl Component {
    fn authorizer_mut(&mut self, appid: &str) -> Option<&mut Authorizer> {
        let i = *self.index.get(appid)?;
        self.authorizers.get_mut(i)
    }

    fn authorizer(&self, appid: &str) -> Option<&Authorizer> {
        self.authorizers.get(*self.index.get(appid)?)
    }

    fn add_authorizer(&mut self, authorizer: Authorizer) {
        self.index
            .insert(authorizer.appid.clone(), self.authorizers.len());
        self.authorizers.push(authorizer);
    }

    /// Accepts the newest ticket or the one before it while they live.
    fn check_ticket(&self, ticket: Option<&str>, now: Instant) -> Result<(), WxError> {
        let ticket = present(ticket).ok_or(WxError::TICKET_INVALID)?;
        let (age, known) = self
            .tickets
            .iter()
            .enumerate()
            .find(|(_, t)| t.value == ticket)
            .ok_or(WxError::TICKET_INVALID)?;
        if now >= known.expires_at {
            Err(WxError::TICKET_EXPIRED)
        } else if age > 1 {
            Err(WxError::TICKET_INVALID)
        } else {
            Ok(())
        }
    }
}

/// What `api_component_token` and `api_authorizer_token` answer, and the token part of
/// `api_query_auth`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IssuedAuthorizerToken {
    pub(crate) authorizer_appid: String,
    pub(crate) access_token: String,
    pub(crate) expires_in: u64,
    pub(crate) refresh_token: String,
    pub(crate) func_info: Vec<u32>,
}

/// One row of `api_get_authorizer_list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Listed {
    pub(crate) authorizer_appid: String,
    pub(crate) refresh_token: String,
    pub(crate) auth_time: u64,
}

/// `api_get_authorizer_info`'s facts about one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AuthorizerDetails {
    pub(crate) authorizer_appid: String,
    pub(crate) refresh_token: String,
    pub(crate) func_info: Vec<u32>,
}

/// What a successful authorization gives: the code the merchant's browser (or the push) carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// `authorized` for a new authorization, `updateauthorized` when the account was already
    /// authorized (or needed re-authorization).
    pub info_type: &'static str,
    pub authorizer_appid: String,
    pub authorization_code: String,
    pub expires_in: u64,
    /// Unix seconds on the fake clock (`AuthorizationCodeExpiredTime`).
    pub code_expires_at: u64,
    /// The pre-auth code the authorization used (a fresh one if none was given).
    pub pre_auth_code: String,
}

/// Where and how to push a platform's events. Written-by-hand `Debug` keeps the keys out.
#[derive(Clone)]
pub(super) struct PushTarget {
    pub(super) url: String,
    pub(super) component_appid: String,
    pub(super) msg_token: String,
    pub(super) encoding_aes_key: String,
}

impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTarget")
            .field("url", &self.url)
            .field("component_appid", &self.component_appid)
            .finish_non_exhaustive()
    }
}

/// The component side of the fake's state: a part of `FakeState`, behind the same lock and on
/// the same clock, which each call passes in as a [`Minting`].
#[derive(Debug)]
pub(crate) struct ComponentState {
    components: HashMap<String, Component>,
    /// Component and authorizer tokens (a book of their own, so that its memory bound can grow
    /// with the authorizers without touching the app tokens').
    book: TokenBook,
    calls: HashMap<Endpoint, u64>,
    /// How often tickets are pushed on their own (zero: never); the pushing task watches it.
    ticket_interval: watch::Sender<Duration>,
    pushes: VecDeque<PushRecord>,
}

impl ComponentState {
    pub(crate) fn new(
        platforms: &[FakePlatform],
        remembered_tokens: usize,
        ticket_interval: Duration,
    ) -> ComponentState {
        let components = platforms
            .iter()
            .map(|p| {
                let component = Component {
                    secret: p.component_secret.clone(),
                    msg_token: p.token.clone(),
                    encoding_aes_key: p.encoding_aes_key.clone(),
                    event_url: p.event_url.clone(),
                    tickets: VecDeque::new(),
                    token: Slot::default(),
                    tokens_minted: 0,
                    preauth_codes: HashMap::new(),
                    auth_codes: HashMap::new(),
                    authorizers: Vec::new(),
                    index: HashMap::new(),
                    bulk_next: 0,
                };
                (p.component_appid.clone(), component)
            })
            .collect();
        ComponentState {
            components,
            book: TokenBook::new(remembered_tokens),
            calls: HashMap::new(),
            ticket_interval: watch::Sender::new(ticket_interval),
            pushes: VecDeque::new(),
        }
    }

    pub(crate) fn set_ticket_interval(&self, every: Duration) {
        self.ticket_interval.send_replace(every);
    }

    pub(crate) fn watch_ticket_interval(&self) -> watch::Receiver<Duration> {
        self.ticket_interval.subscribe()
    }

    pub(crate) fn record_push(&mut self, push: PushRecord) {
        if self.pushes.len() == PUSHES_REMEMBERED {
            self.pushes.pop_front();
        }
        self.pushes.push_back(push);
    }

    pub(crate) fn pushes(&self) -> Vec<PushRecord> {
        self.pushes.iter().cloned().collect()
    }

    pub(crate) fn has_platforms(&self) -> bool {
        !self.components.is_empty()
    }

    // ---- counters -------------------------------------------------------------------------

    pub(crate) fn count(&mut self, ep: Endpoint) {
        *self.calls.entry(ep).or_default() += 1;
    }

    pub(crate) fn calls(&self, ep: Endpoint) -> u64 {
        self.calls.get(&ep).copied().unwrap_or(0)
    }

    // ---- tokens ---------------------------------------------------------------------------

    pub(crate) fn validity(&self, token: &str, now: Instant) -> Validity {
        self.book.validity(token, now)
    }

    pub(crate) fn book(&self) -> &TokenBook {
        &self.book
    }

    /// The book, to kill a token in it (`reported`'s control).
    pub(crate) fn book_mut(&mut self) -> &mut TokenBook {
        &mut self.book
    }

    /// The JS-SDK ticket slot and mint counter of the authorizer that owns a token with this
    /// owner key, if it is one.
    pub(crate) fn ticket_slot(
        &mut self,
        owner: &str,
        kind: TicketKind,
    ) -> Option<(&mut Slot, &mut u64)> {
        let (component, authorizer) = owner.split_once('/')?;
        let a = self
            .components
            .get_mut(component)?
            .authorizer_mut(authorizer)?;
        Some((a.tickets.entry(kind).or_default(), &mut a.tickets_minted))
    }

    /// Checks a component token in a query and the `component_appid` in the body (or, for
    /// web OAuth on behalf of an account, the query).
    pub(crate) fn check_token<'a>(
        &self,
        token: Option<&str>,
        appid: Option<&'a str>,
        now: Instant,
    ) -> Result<&'a str, WxError> {
        let token = present(token).ok_or(WxError::TOKEN_MISSING)?;
        let record = self
            .book
            .get(token)
            .filter(|r| r.family == Family::Component)
            .ok_or(WxError::INVALID_CREDENTIAL)?;
        match record.validity(now) {
            Validity::Valid => {}
            Validity::Expired => return Err(WxError::TOKEN_EXPIRED),
            Validity::Replaced | Validity::Unknown => return Err(WxError::INVALID_CREDENTIAL),
        }
        let appid = present(appid).ok_or(WxError::APPID_MISSING)?;
        if appid != record.owner {
            return Err(WxError::INVALID_COMPONENT);
        }
        Ok(appid)
    }

    /// The component whose token `token` is (checked as [`Self::check_token`] does).
    fn caller(
        &self,
        token: Option<&str>,
        appid: Option<&str>,
        now: Instant,
    ) -> Result<&Component, WxError> {
        let appid = self.check_token(token, appid, now)?;
        self.components.get(appid).ok_or(WxError::INVALID_COMPONENT)
    }

    /// As [`Self::caller`], to change: its appid, the component, and the token book beside it.
    fn caller_mut<'a>(
        &mut self,
        token: Option<&str>,
        appid: Option<&'a str>,
        now: Instant,
    ) -> Result<(&'a str, &mut Component, &mut TokenBook), WxError> {
        let appid = self.check_token(token, appid, now)?;
        let component = self
            .components
            .get_mut(appid)
            .ok_or(WxError::INVALID_COMPONENT)?;
        Ok((appid, component, &mut self.book))
    }

    /// `api_component_token`: component appid, then secret, then ticket. Every success mints a
    /// new token that replaces the previous one (which overlaps, as a `/cgi-bin/token` token).
    pub(crate) fn component_token(
        &mut self,
        appid: Option<&str>,
        secret: Option<&str>,
        ticket: Option<&str>,
        m: &Minting,
    ) -> Result<(String, u64), WxError> {
        let (appid, component) = authenticate(&mut self.components, appid, secret)?;
        component.check_ticket(ticket, m.now)?;
        let token = self
            .book
            .mint(Family::Component, appid, m.now, m.lifetime, m.token_len);
        self.book
            .rotate(&mut component.token, token.clone(), m.now, m.overlap);
        component.tokens_minted += 1;
        tracing::debug!(component_appid = appid, token = %super::state::fingerprint(&token), "fake minted component_access_token");
        Ok((token, m.lifetime.as_secs()))
    }

    /// `api_start_push_ticket`: checks the credentials; the caller pushes a ticket if the
    /// platform has an event URL.
    pub(crate) fn start_push_ticket(
        &mut self,
        appid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<(), WxError> {
        authenticate(&mut self.components, appid, secret).map(|_| ())
    }

    /// `api_create_preauthcode`: a code that one authorization can use.
    pub(crate) fn create_preauthcode(
        &mut self,
        token: Option<&str>,
        appid: Option<&str>,
        m: &Minting,
    ) -> Result<(String, u64), WxError> {
        let (_, component, _) = self.caller_mut(token, appid, m.now)?;
        let code = new_code("preauthcode@@@", &mut component.preauth_codes, "", m.now);
        Ok((code, PREAUTH_CODE_LIFETIME.as_secs()))
    }

    /// `api_query_auth`: uses up the authorization code and mints the account a new token.
    pub(crate) fn query_auth(
        &mut self,
        token: Option<&str>,
        appid: Option<&str>,
        code: Option<&str>,
        m: &Minting,
    ) -> Result<IssuedAuthorizerToken, WxError> {
        let (appid, component, book) = self.caller_mut(token, appid, m.now)?;
        let code = present(code).ok_or(WxError::CODE_INVALID)?;
        let issued = component
            .auth_codes
            .get(code)
            .ok_or(WxError::CODE_INVALID)?;
        if m.now >= issued.expires_at {
            return Err(WxError::CODE_EXPIRED);
        }
        let Some(issued) = component.auth_codes.remove(code) else {
            return Err(WxError::CODE_INVALID);
        };
        let authorizer = component
            .authorizer_mut(&issued.authorizer)
            .filter(|a| a.state != AuthorizerState::Left)
            .ok_or(WxError::CODE_INVALID)?;
        authorizer.queried = true;
        Ok(mint_authorizer_token(book, appid, authorizer, m))
    }

    /// `api_authorizer_token`: a new token for the account, if its refresh token still works.
    pub(crate) fn authorizer_token(
        &mut self,
        token: Option<&str>,
        appid: Option<&str>,
        authorizer_appid: Option<&str>,
        refresh_token: Option<&str>,
        m: &Minting,
    ) -> Result<IssuedAuthorizerToken, WxError> {
        let (appid, component, book) = self.caller_mut(token, appid, m.now)?;
        let authorizer_appid = present(authorizer_appid).ok_or(WxError::APPID_MISSING)?;
        let authorizer = component
            .authorizer_mut(authorizer_appid)
            .ok_or(WxError::NOT_AUTHORIZED)?;
        let works = authorizer.state == AuthorizerState::Authorized
            && present(refresh_token) == Some(authorizer.refresh_token.as_str());
        if !works {
            return Err(WxError::REFRESH_TOKEN_INVALID);
        }
        Ok(mint_authorizer_token(book, appid, authorizer, m))
    }

    /// `api_get_authorizer_info`: an authorized account's permissions and refresh token.
    pub(crate) fn authorizer_info(
        &self,
        token: Option<&str>,
        appid: Option<&str>,
        authorizer_appid: Option<&str>,
        now: Instant,
    ) -> Result<AuthorizerDetails, WxError> {
        let component = self.caller(token, appid, now)?;
        let authorizer_appid = present(authorizer_appid).ok_or(WxError::APPID_MISSING)?;
        let a = component
            .authorizer(authorizer_appid)
            .filter(|a| a.state != AuthorizerState::Left)
            .ok_or(WxError::NOT_AUTHORIZED)?;
        Ok(AuthorizerDetails {
            authorizer_appid: a.appid.clone(),
            refresh_token: a.shown_refresh_token().to_owned(),
            func_info: a.func_info.clone(),
        })
    }

    /// `api_get_authorizer_list`: the accounts authorized now, in order of first authorization,
    /// `count` (at most 500) from `offset`, and how many there are in all.
    pub(crate) fn authorizer_list(
        &self,
        token: Option<&str>,
        appid: Option<&str>,
        offset: u64,
        count: u64,
        now: Instant,
    ) -> Result<(u64, Vec<Listed>), WxError> {
        let component = self.caller(token, appid, now)?;
        if count > LIST_MAX_COUNT {
            return Err(WxError::COUNT_LIMIT);
        }
        let listed = || {
            component
                .authorizers
                .iter()
                .filter(|a| a.state != AuthorizerState::Left)
        };
        let total = listed().count() as u64;
        let page = listed()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .map(|a| Listed {
                authorizer_appid: a.appid.clone(),
                refresh_token: a.shown_refresh_token().to_owned(),
                auth_time: a.auth_time,
            })
            .collect();
        Ok((total, page))
    }

    // ---- control operations ---------------------------------------------------------------

    fn component_mut(&mut self, appid: &str) -> Result<&mut Component, ControlError> {
        self.components
            .get_mut(appid)
            .ok_or_else(|| ControlError::UnknownComponent(appid.to_owned()))
    }

    fn component(&self, appid: &str) -> Result<&Component, ControlError> {
        self.components
            .get(appid)
            .ok_or_else(|| ControlError::UnknownComponent(appid.to_owned()))
    }

    /// Mints a new verify ticket: it becomes the newest, the newest becomes the previous one.
    pub(crate) fn mint_ticket(
        &mut self,
        appid: &str,
        now: Instant,
    ) -> Result<String, ControlError> {
        let component = self.component_mut(appid)?;
        let value = format!("ticket@@@{}", random_token(86));
        component.tickets.push_front(VerifyTicket {
            value: value.clone(),
            expires_at: now + TICKET_LIFETIME,
        });
        component.tickets.truncate(TICKETS_REMEMBERED);
        Ok(value)
    }

    pub(crate) fn set_event_url(
        &mut self,
        appid: &str,
        url: Option<String>,
    ) -> Result<(), ControlError> {
        self.component_mut(appid)?.event_url = url;
        Ok(())
    }

    pub(crate) fn push_target(&self, appid: &str) -> Result<PushTarget, ControlError> {
        let component = self.component(appid)?;
        let url = component
            .event_url
            .clone()
            .ok_or_else(|| ControlError::NoEventUrl(appid.to_owned()))?;
        Ok(PushTarget {
            url,
            component_appid: appid.to_owned(),
            msg_token: component.msg_token.clone(),
            encoding_aes_key: component.encoding_aes_key.clone(),
        })
    }

    /// The platforms with an event URL: where the periodic ticket push goes.
    pub(crate) fn pushable(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .components
            .iter()
            .filter(|(_, c)| c.event_url.is_some())
            .map(|(appid, _)| appid.clone())
            .collect();
        all.sort();
        all
    }

    /// The merchant authorizes (or re-authorizes) the platform: a new refresh token, the granted
    /// permissions, its access tokens killed, and an authorization code valid 10 minutes. A
    /// pre-auth code, if given, must be one that `api_create_preauthcode` issued and nobody used.
    pub(crate) fn authorize(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
        func_info: &[u32],
        pre_auth_code: Option<&str>,
        m: &Minting,
    ) -> Result<Authorized, ControlError> {
        if !valid_appid(authorizer_appid) {
            return Err(ControlError::BadAppid);
        }
        let component = self
            .components
            .get_mut(appid)
            .ok_or_else(|| ControlError::UnknownComponent(appid.to_owned()))?;
        let pre_auth_code = match pre_auth_code {
            Some(code) => {
                let live = component
                    .preauth_codes
                    .remove(code)
                    .is_some_and(|c| m.now < c.expires_at);
                if !live {
                    return Err(ControlError::PreAuthCode);
                }
                code.to_owned()
            }
            None => format!("preauthcode@@@{}", random_token(RANDOM_PART_LEN)),
        };
        let refresh_token = new_refresh_token();
        let info_type = match component.authorizer_mut(authorizer_appid) {
            Some(a) => {
                let info_type = if a.state == AuthorizerState::Left {
                    a.queried = false;
                    "authorized"
                } else {
                    "updateauthorized"
                };
                a.kill_tokens(&mut self.book, m.now);
                a.refresh_token = refresh_token;
                a.state = AuthorizerState::Authorized;
                a.func_info = func_info.to_vec();
                a.auth_time = m.unix_now;
                info_type
            }
            None => {
                component.add_authorizer(Authorizer {
                    appid: authorizer_appid.to_owned(),
                    refresh_token,
                    state: AuthorizerState::Authorized,
                    func_info: func_info.to_vec(),
                    auth_time: m.unix_now,
                    queried: false,
                    token: Slot::default(),
                    tokens_minted: 0,
                    tickets: HashMap::new(),
                    tickets_minted: 0,
                });
                "authorized"
            }
        };
        let code = new_code(
            "queryauthcode@@@",
            &mut component.auth_codes,
            authorizer_appid,
            m.now,
        );
        self.grow_book();
        Ok(Authorized {
            info_type,
            authorizer_appid: authorizer_appid.to_owned(),
            authorization_code: code,
            expires_in: AUTH_CODE_LIFETIME.as_secs(),
            code_expires_at: m.unix_now + AUTH_CODE_LIFETIME.as_secs(),
            pre_auth_code,
        })
    }

    /// The merchant revokes the authorization: not listed any more, its refresh token answers
    /// 61023 and its access tokens die at once.
    pub(crate) fn unauthorize(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
        now: Instant,
    ) -> Result<(), ControlError> {
        let (book, a) = self.book_and_authorizer(appid, authorizer_appid)?;
        a.state = AuthorizerState::Left;
        a.kill_tokens(book, now);
        Ok(())
    }

    /// WeChat resets the account's refresh token behind the server's back: the stored one
    /// answers 61023, the list shows the new one. Returns the new one.
    pub(crate) fn rotate_refresh_token(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Result<String, ControlError> {
        let a = self.authorizer_mut(appid, authorizer_appid)?;
        a.refresh_token = new_refresh_token();
        Ok(a.refresh_token.clone())
    }

    /// The account's refresh token stops working while it stays listed with it: only a new
    /// authorization helps.
    pub(crate) fn require_reauth(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Result<(), ControlError> {
        let a = self.authorizer_mut(appid, authorizer_appid)?;
        if a.state == AuthorizerState::Authorized {
            a.state = AuthorizerState::NeedsReauth;
        }
        Ok(())
    }

    /// `n` new authorized accounts at once, appids from [`bulk_authorizer_appid`] (skipping
    /// any taken), with refresh tokens as `api_query_auth` would have shown them: for benchmarks
    /// and reconciliation tests. Returns their appids.
    pub(crate) fn bulk_authorize(
        &mut self,
        appid: &str,
        n: u64,
        unix_now: u64,
    ) -> Result<Vec<String>, ControlError> {
        let component = self.component_mut(appid)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let mut made = Vec::with_capacity(n);
        component.authorizers.reserve(n);
        while made.len() < n {
            let index = component.bulk_next;
            component.bulk_next += 1;
            let authorizer_appid = bulk_authorizer_appid(index);
            if component.index.contains_key(&authorizer_appid) {
                continue;
            }
            made.push(authorizer_appid.clone());
            component.add_authorizer(Authorizer {
                appid: authorizer_appid,
                refresh_token: new_refresh_token(),
                state: AuthorizerState::Authorized,
                func_info: BULK_FUNC_INFO.to_vec(),
                auth_time: unix_now,
                queried: true,
                token: Slot::default(),
                tokens_minted: 0,
                tickets: HashMap::new(),
                tickets_minted: 0,
            });
        }
        self.grow_book();
        Ok(made)
    }

    /// Keeps the book's memory bound above the tokens that can be alive at once (two per
    /// authorizer and per platform, with room to spare), so that minting never has to scan a
    /// book full of living tokens for one to forget.
    fn grow_book(&mut self) {
        let holders: usize = self
            .components
            .values()
            .map(|c| c.authorizers.len() + 1)
            .sum();
        self.book.limit = self.book.limit.max(holders.saturating_mul(4));
    }

    fn authorizer_mut(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Result<&mut Authorizer, ControlError> {
        Ok(self.book_and_authorizer(appid, authorizer_appid)?.1)
    }

    fn book_and_authorizer(
        &mut self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Result<(&mut TokenBook, &mut Authorizer), ControlError> {
        let component = self
            .components
            .get_mut(appid)
            .ok_or_else(|| ControlError::UnknownComponent(appid.to_owned()))?;
        let a = component
            .authorizer_mut(authorizer_appid)
            .ok_or_else(|| ControlError::UnknownAuthorizer(authorizer_appid.to_owned()))?;
        Ok((&mut self.book, a))
    }

    // ---- what tests ask ---------------------------------------------------------------------

    pub(crate) fn current_ticket(&self, appid: &str) -> Option<String> {
        Some(self.components.get(appid)?.tickets.front()?.value.clone())
    }

    pub(crate) fn current_component_token(&self, appid: &str) -> Option<String> {
        self.components.get(appid)?.token.current.clone()
    }

    pub(crate) fn component_tokens_minted(&self, appid: &str) -> u64 {
        self.components.get(appid).map_or(0, |c| c.tokens_minted)
    }

    fn find(&self, appid: &str, authorizer_appid: &str) -> Option<&Authorizer> {
        self.components.get(appid)?.authorizer(authorizer_appid)
    }

    pub(crate) fn refresh_token(&self, appid: &str, authorizer_appid: &str) -> Option<String> {
        Some(self.find(appid, authorizer_appid)?.refresh_token.clone())
    }

    pub(crate) fn authorizer_state(
        &self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Option<AuthorizerState> {
        Some(self.find(appid, authorizer_appid)?.state)
    }

    pub(crate) fn current_authorizer_token(
        &self,
        appid: &str,
        authorizer_appid: &str,
    ) -> Option<String> {
        self.find(appid, authorizer_appid)?.token.current.clone()
    }

    pub(crate) fn authorizer_tokens_minted(&self, appid: &str, authorizer_appid: &str) -> u64 {
        self.find(appid, authorizer_appid)
            .map_or(0, |a| a.tokens_minted)
    }

    pub(crate) fn authorizer_tickets_minted(&self, appid: &str, authorizer_appid: &str) -> u64 {
        self.find(appid, authorizer_appid)
            .map_or(0, |a| a.tickets_minted)
    }

    pub(crate) fn authorizer_count(&self, appid: &str) -> usize {
        self.components
            .get(appid)
            .map_or(0, |c| c.authorizers.len())
    }
}

/// Checks `component_appid` and its secret (`api_component_token`, `api_start_push_ticket`), in
/// WeChat's order: appid, then secret.
fn authenticate<'s, 'c>(
    components: &'s mut HashMap<String, Component>,
    appid: Option<&'c str>,
    secret: Option<&str>,
) -> Result<(&'c str, &'s mut Component), WxError> {
    let appid = present(appid).ok_or(WxError::APPID_MISSING)?;
    let component = components
        .get_mut(appid)
        .ok_or(WxError::INVALID_COMPONENT)?;
    let secret = present(secret).ok_or(WxError::SECRET_MISSING)?;
    // A fake: no need for a constant-time comparison here.
    if secret != component.secret {
        return Err(WxError::INVALID_SECRET);
    }
    Ok((appid, component))
}

fn mint_authorizer_token(
    book: &mut TokenBook,
    appid: &str,
    a: &mut Authorizer,
    m: &Minting,
) -> IssuedAuthorizerToken {
    let token = book.mint_with(Family::Authorizer, &owner_key(appid, &a.appid), m);
    book.rotate(&mut a.token, token.clone(), m.now, m.overlap);
    a.tokens_minted += 1;
    tracing::debug!(component_appid = appid, authorizer_appid = %a.appid, token = %super::state::fingerprint(&token), "fake minted authorizer_access_token");
    IssuedAuthorizerToken {
        authorizer_appid: a.appid.clone(),
        access_token: token,
        expires_in: m.lifetime.as_secs(),
        refresh_token: a.refresh_token.clone(),
        func_info: a.func_info.clone(),
    }
}

fn new_refresh_token() -> String {
    format!("refreshtoken@@@{}", random_token(RANDOM_PART_LEN))
}

/// A new single-use code, after forgetting codes long expired.
fn new_code(
    prefix: &str,
    codes: &mut HashMap<String, Code>,
    authorizer: &str,
    now: Instant,
) -> String {
    codes.retain(|_, c| now.saturating_duration_since(c.expires_at) < EXPIRED_CODES_REMEMBERED);
    let lifetime = if authorizer.is_empty() {
        PREAUTH_CODE_LIFETIME
    } else {
        AUTH_CODE_LIFETIME
    };
    let code = format!("{prefix}{}", random_token(RANDOM_PART_LEN));
    codes.insert(
        code.clone(),
        Code {
            authorizer: authorizer.to_owned(),
            expires_at: now + lifetime,
        },
    );
    code
}

/// What the fake takes as an authorizer appid: it ends up in URLs and event XML.
fn valid_appid(appid: &str) -> bool {
    (1..=64).contains(&appid.len())
        && appid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::super::state::FakeState;
    use super::*;
    use crate::fake::FakeConfig;

    const COMPONENT: &str = "wxcomponent";
    const SECRET: &str = "component-secret";

    fn state() -> FakeState {
        FakeState::new(&FakeConfig {
            platforms: vec![FakePlatform {
                component_appid: COMPONENT.into(),
                component_secret: SECRET.into(),
                token: "token".into(),
                encoding_aes_key: "k".repeat(43),
                event_url: None,
            }],
            ..FakeConfig::default()
        })
    }

    fn component_token(s: &mut FakeState, ticket: &str) -> Result<String, WxError> {
        let (c, m) = s.component();
        c.component_token(Some(COMPONENT), Some(SECRET), Some(ticket), &m)
            .map(|(token, _)| token)
    }

    #[test]
    fn an_old_ticket_is_invalid_before_it_expires_and_expired_after() {
        let mut s = state();
        let mint = |s: &mut FakeState| {
            let (c, m) = s.component();
            c.mint_ticket(COMPONENT, m.now).unwrap()
        };
        let old = mint(&mut s);
        mint(&mut s);
        mint(&mut s);
        assert_eq!(component_token(&mut s, &old), Err(WxError::TICKET_INVALID));
        s.advance(TICKET_LIFETIME);
        assert_eq!(component_token(&mut s, &old), Err(WxError::TICKET_EXPIRED));
    }

    #[test]
    fn only_the_newest_tickets_are_remembered() {
        let mut s = state();
        let (c, m) = s.component();
        let first = c.mint_ticket(COMPONENT, m.now).unwrap();
        for _ in 0..TICKETS_REMEMBERED {
            c.mint_ticket(COMPONENT, m.now).unwrap();
        }
        assert_eq!(c.components[COMPONENT].tickets.len(), TICKETS_REMEMBERED);
        s.advance(TICKET_LIFETIME);
        // Forgotten: no longer known to have expired.
        assert_eq!(
            component_token(&mut s, &first),
            Err(WxError::TICKET_INVALID)
        );
    }

    #[test]
    fn the_token_book_grows_with_the_authorizers_so_living_tokens_are_never_scanned_for() {
        let mut s = state();
        let (c, m) = s.component();
        c.book.limit = 10;
        c.bulk_authorize(COMPONENT, 100, m.unix_now).unwrap();
        assert_eq!(c.book.limit, 4 * 101, "two tokens per holder, twice over");
    }

    #[test]
    fn codes_long_expired_are_forgotten_when_new_ones_are_made() {
        let mut s = state();
        let (c, m) = s.component();
        c.authorize(COMPONENT, "wxa", &[1], None, &m).unwrap();
        s.advance(AUTH_CODE_LIFETIME + EXPIRED_CODES_REMEMBERED);
        let (c, m) = s.component();
        c.authorize(COMPONENT, "wxb", &[1], None, &m).unwrap();
        assert_eq!(c.components[COMPONENT].auth_codes.len(), 1);
    }

    #[test]
    fn authorizer_appids_are_checked() {
        let mut s = state();
        let (c, m) = s.component();
        for bad in ["", "has space", "wx<xml>", &"w".repeat(65)] {
            assert_eq!(
                c.authorize(COMPONENT, bad, &[1], None, &m),
                Err(ControlError::BadAppid),
                "{bad:?}"
            );
        }
        assert_eq!(
            c.authorize("wxnobody", "wxa", &[1], None, &m),
            Err(ControlError::UnknownComponent("wxnobody".into()))
        );
    }
}

//! The fake's WeCom service-provider rules: suites (and templates), suite tickets, suite
//! tokens, pre-auth codes, AuthCodes, installed corps with their permanent codes and corp
//! tokens, provider tokens, and per-call counters. No HTTP here, so the rules are unit-tested
//! directly; the wire is `wecom_suite.rs`, the tests' handle `wecom_suite_handle.rs`.
//!
//! What it models (`shared/wecom-providers.md`): a suite ticket lives 30 minutes and
//! `get_suite_token` takes the newest one or the one before it (40085 otherwise); a suite
//! token lives `expires_in` and may be ended early (42009 after); an AuthCode works once
//! (40078 after); a corp token and a provider token are handed out again while they live, as
//! WeCom does; a permanent code stops working when the corp cancels, the code is reset, or a
//! test says so (40084).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::state::{random_token, WxError};

/// A suite ticket is valid for 30 minutes.
pub(super) const SUITE_TICKET_LIFETIME: Duration = Duration::from_secs(1800);
/// A pre-auth code lives 20 minutes.
const PRE_AUTH_LIFETIME: Duration = Duration::from_secs(1200);
/// An AuthCode lives 10 minutes.
const AUTH_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Length of minted tokens, tickets and codes.
const LEN: usize = 64;

impl WxError {
    pub(crate) const WECOM_AUTH_CODE_INVALID: WxError = WxError(40078);
    pub(crate) const WECOM_SUITE_TOKEN_INVALID: WxError = WxError(40082);
    pub(crate) const WECOM_PERMANENT_CODE_INVALID: WxError = WxError(40084);
    pub(crate) const WECOM_SUITE_TICKET_INVALID: WxError = WxError(40085);
    pub(crate) const WECOM_SUITE_TOKEN_EXPIRED: WxError = WxError(42009);
    pub(crate) const WECOM_INVALID_CORPID: WxError = WxError(40013);
    pub(crate) const WECOM_INVALID_SECRET: WxError = WxError(40001);
    pub(crate) const WECOM_BAD_ARGS: WxError = WxError(40097);
    pub(crate) const WECOM_TOKEN_INVALID: WxError = WxError(40014);
    pub(crate) const WECOM_TOKEN_EXPIRED: WxError = WxError(42001);
}

/// One suite (or template) the fake knows.
#[derive(Clone)]
pub struct FakeSuite {
    pub suite_id: String,
    pub suite_secret: String,
    /// The callback Token and EncodingAESKey that sign and encrypt its pushes.
    pub token: String,
    pub encoding_aes_key: String,
    /// A customized-app template: corp tokens come from `gettoken` with the permanent code.
    pub template: bool,
    /// The provider's corpid: the receive id of the URL check's `echostr`.
    pub provider_corpid: String,
}

impl std::fmt::Debug for FakeSuite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeSuite")
            .field("suite_id", &self.suite_id)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// Where an installed corp stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CorpState {
    Installed,
    /// Its permanent code is refused (40084) though it did not cancel.
    CodeRefused,
    Cancelled,
}

/// A credential the fake hands out while it lives, with its expiry.
type LiveSlot = Option<(String, Instant)>;

/// One corp that installed a suite.
struct Corp {
    permanent_code: String,
    state: CorpState,
    corp_name: String,
    agentid: u32,
    token: Option<(String, Instant)>,
    tokens_minted: u64,
    /// Its JS-SDK tickets by kind (`jsapi`, `agent_config`), each the same while it lives.
    tickets: HashMap<&'static str, (LiveSlot, u64)>,
}

struct AuthCode {
    corpid: String,
    permanent_code: String,
    expires: Instant,
    used: bool,
}

struct Suite {
    cfg: FakeSuite,
    callback_url: Option<String>,
    /// Newest first, with when each was minted.
    tickets: VecDeque<(String, Instant)>,
    /// Every suite token minted with its expiry: they stay valid until then unless ended.
    suite_tokens: HashMap<String, Instant>,
    suite_tokens_minted: u64,
    pre_auth_codes: HashMap<String, (Instant, Option<u8>)>,
    auth_codes: HashMap<String, AuthCode>,
    corps: HashMap<String, Corp>,
}

/// A provider token the fake hands out while it lives.
struct Provider {
    secret: String,
    token: Option<(String, Instant)>,
    minted: u64,
}

/// What an exchange of an AuthCode answers.
#[derive(Debug, Clone)]
pub struct PermanentCode {
    pub corpid: String,
    pub corp_name: String,
    pub agentid: u32,
    pub permanent_code: String,
}

/// What the fake's WeCom providers hold. `Debug` names the suites only.
#[derive(Default)]
pub struct WecomSuiteState {
    suites: HashMap<String, Suite>,
    providers: HashMap<String, Provider>,
    calls: HashMap<&'static str, u64>,
    expires_in: u64,
}

impl std::fmt::Debug for WecomSuiteState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomSuiteState")
            .field("suites", &self.suites.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl WecomSuiteState {
    pub(crate) fn new(
        suites: &[FakeSuite],
        providers: &[(String, String)],
        expires_in: u64,
    ) -> Self {
        let suites = suites
            .iter()
            .map(|cfg| {
                let suite = Suite {
                    cfg: cfg.clone(),
                    callback_url: None,
                    tickets: VecDeque::new(),
                    suite_tokens: HashMap::new(),
                    suite_tokens_minted: 0,
                    pre_auth_codes: HashMap::new(),
                    auth_codes: HashMap::new(),
                    corps: HashMap::new(),
                };
                (cfg.suite_id.clone(), suite)
            })
            .collect();
        let providers = providers
            .iter()
            .map(|(corpid, secret)| {
                let p = Provider {
                    secret: secret.clone(),
                    token: None,
                    minted: 0,
                };
                (corpid.clone(), p)
            })
            .collect();
        WecomSuiteState {
            suites,
            providers,
            calls: HashMap::new(),
            expires_in: expires_in.max(1),
        }
    }

    fn lifetime(&self) -> Duration {
        Duration::from_secs(self.expires_in)
    }

    pub(crate) fn count(&mut self, endpoint: &'static str) {
        *self.calls.entry(endpoint).or_default() += 1;
    }

    /// Calls of one endpoint (`get_corp_token`, `get_suite_token`, ...).
    /// Every endpoint's calls, when some suite is known.
    pub(crate) fn calls_json(&self) -> Option<serde_json::Value> {
        if self.suites.is_empty() {
            return None;
        }
        Some(serde_json::Value::Object(
            self.calls
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).into()))
                .collect(),
        ))
    }

    pub(crate) fn calls(&self, endpoint: &str) -> u64 {
        self.calls.get(endpoint).copied().unwrap_or(0)
    }

    fn suite(&mut self, suite_id: &str) -> Result<&mut Suite, WxError> {
        self.suites.get_mut(suite_id).ok_or(WxError::WECOM_BAD_ARGS)
    }

    /// The suite whose token `token` is, if it lives at `now` (40082 unknown, 42009 expired).
    fn by_token(&mut self, token: &str, now: Instant) -> Result<&mut Suite, WxError> {
        let suite = self
            .suites
            .values_mut()
            .find(|s| s.suite_tokens.contains_key(token))
            .ok_or(WxError::WECOM_SUITE_TOKEN_INVALID)?;
        match suite.suite_tokens.get(token) {
            Some(expires) if *expires > now => Ok(suite),
            _ => Err(WxError::WECOM_SUITE_TOKEN_EXPIRED),
        }
    }

    // ---- the API ----------------------------------------------------------------------------

    /// `get_suite_token`: the secret, then the ticket (the newest or the one before, alive).
    pub(crate) fn suite_token(
        &mut self,
        suite_id: &str,
        secret: &str,
        ticket: &str,
        now: Instant,
    ) -> Result<(String, u64), WxError> {
        let lifetime = self.lifetime();
        let suite = self.suite(suite_id)?;
        if suite.cfg.suite_secret != secret {
            return Err(WxError::WECOM_INVALID_SECRET);
        }
        let known = suite.tickets.iter().take(2).any(|(t, at)| {
            t == ticket && now.saturating_duration_since(*at) < SUITE_TICKET_LIFETIME
        });
        if !known {
            return Err(WxError::WECOM_SUITE_TICKET_INVALID);
        }
        let token = random_token(LEN);
        suite.suite_tokens.insert(token.clone(), now + lifetime);
        suite.suite_tokens_minted += 1;
        Ok((token, lifetime.as_secs()))
    }

    pub(crate) fn pre_auth_code(&mut self, token: &str, now: Instant) -> Result<String, WxError> {
        let suite = self.by_token(token, now)?;
        let code = random_token(LEN);
        suite
            .pre_auth_codes
            .insert(code.clone(), (now + PRE_AUTH_LIFETIME, None));
        Ok(code)
    }

    pub(crate) fn set_session_info(
        &mut self,
        token: &str,
        pre_auth_code: &str,
        auth_type: u8,
        now: Instant,
    ) -> Result<(), WxError> {
        let suite = self.by_token(token, now)?;
        match suite.pre_auth_codes.get_mut(pre_auth_code) {
            Some((expires, session)) if *expires > now && auth_type <= 1 => {
                *session = Some(auth_type);
                Ok(())
            }
            _ => Err(WxError::WECOM_BAD_ARGS),
        }
    }

    /// The auth type a pre-auth code was given, for tests.
    pub(crate) fn session_of(&self, suite_id: &str, pre_auth_code: &str) -> Option<u8> {
        self.suites
            .get(suite_id)?
            .pre_auth_codes
            .get(pre_auth_code)?
            .1
    }

    /// `get_permanent_code`: the AuthCode works once.
    pub(crate) fn permanent_code(
        &mut self,
        token: &str,
        auth_code: &str,
        now: Instant,
    ) -> Result<PermanentCode, WxError> {
        let suite = self.by_token(token, now)?;
        let code = suite
            .auth_codes
            .get_mut(auth_code)
            .filter(|c| !c.used && c.expires > now)
            .ok_or(WxError::WECOM_AUTH_CODE_INVALID)?;
        code.used = true;
        let corpid = code.corpid.clone();
        let permanent_code = code.permanent_code.clone();
        let corp = suite
            .corps
            .get(&corpid)
            .ok_or(WxError::WECOM_AUTH_CODE_INVALID)?;
        Ok(PermanentCode {
            corpid,
            corp_name: corp.corp_name.clone(),
            agentid: corp.agentid,
            permanent_code,
        })
    }

    /// A corp whose permanent code works (`get_auth_info`, `get_corp_token`).
    fn corp_with_code<'a>(
        suite: &'a mut Suite,
        corpid: &str,
        permanent_code: &str,
    ) -> Result<&'a mut Corp, WxError> {
        suite
            .corps
            .get_mut(corpid)
            .filter(|c| c.state == CorpState::Installed && c.permanent_code == permanent_code)
            .ok_or(WxError::WECOM_PERMANENT_CODE_INVALID)
    }

    pub(crate) fn auth_info(
        &mut self,
        token: &str,
        corpid: &str,
        permanent_code: &str,
        now: Instant,
    ) -> Result<(String, u32), WxError> {
        let suite = self.by_token(token, now)?;
        let corp = Self::corp_with_code(suite, corpid, permanent_code)?;
        Ok((corp.corp_name.clone(), corp.agentid))
    }

    /// `get_corp_token`: the same token while it lives.
    pub(crate) fn corp_token(
        &mut self,
        token: &str,
        corpid: &str,
        permanent_code: &str,
        now: Instant,
    ) -> Result<(String, u64), WxError> {
        let lifetime = self.lifetime();
        let suite = self.by_token(token, now)?;
        if suite.cfg.template {
            // A template's corps take `gettoken`.
            return Err(WxError::WECOM_BAD_ARGS);
        }
        let corp = Self::corp_with_code(suite, corpid, permanent_code)?;
        Ok(reuse_or_mint(
            &mut corp.token,
            &mut corp.tokens_minted,
            lifetime,
            now,
        ))
    }

    /// `get_jsapi_ticket` (`kind` `jsapi`) and `ticket/get?type=agent_config`: the ticket of
    /// the corp whose live token `token` is (40014 unknown, 42001 expired), the same while it
    /// lives.
    pub(crate) fn corp_ticket(
        &mut self,
        token: &str,
        kind: &'static str,
        now: Instant,
    ) -> Result<(String, u64), WxError> {
        let lifetime = self.lifetime();
        let corp = self
            .suites
            .values_mut()
            .flat_map(|s| s.corps.values_mut())
            .find(|c| c.token.as_ref().is_some_and(|(t, _)| t == token))
            .ok_or(WxError::WECOM_TOKEN_INVALID)?;
        if corp.token.as_ref().is_some_and(|(_, e)| *e <= now) {
            return Err(WxError::WECOM_TOKEN_EXPIRED);
        }
        let (slot, minted) = corp.tickets.entry(kind).or_default();
        Ok(reuse_or_mint(slot, minted, lifetime, now))
    }

    /// How many tickets of `kind` the fake minted for a corp.
    pub(crate) fn corp_tickets_minted(&self, suite_id: &str, corpid: &str, kind: &str) -> u64 {
        self.suites
            .get(suite_id)
            .and_then(|s| s.corps.get(corpid))
            .and_then(|c| c.tickets.get(kind))
            .map_or(0, |(_, n)| *n)
    }

    /// `get_provider_token`: the same token while it lives.
    pub(crate) fn provider_token(
        &mut self,
        corpid: &str,
        secret: &str,
        now: Instant,
    ) -> Result<(String, u64), WxError> {
        let lifetime = self.lifetime();
        let p = self
            .providers
            .get_mut(corpid)
            .ok_or(WxError::WECOM_INVALID_CORPID)?;
        if p.secret != secret {
            return Err(WxError::WECOM_INVALID_SECRET);
        }
        Ok(reuse_or_mint(&mut p.token, &mut p.minted, lifetime, now))
    }

    // ---- controls -----------------------------------------------------------------------------

    pub(crate) fn set_callback_url(&mut self, suite_id: &str, url: Option<String>) -> bool {
        match self.suites.get_mut(suite_id) {
            Some(s) => {
                s.callback_url = url;
                true
            }
            None => false,
        }
    }

    /// The suite's keys and callback URL, for a push.
    pub(crate) fn target(&self, suite_id: &str) -> Option<(FakeSuite, String)> {
        let s = self.suites.get(suite_id)?;
        Some((s.cfg.clone(), s.callback_url.clone()?))
    }

    pub(crate) fn mint_ticket(&mut self, suite_id: &str, now: Instant) -> Option<String> {
        let s = self.suites.get_mut(suite_id)?;
        let ticket = random_token(LEN);
        s.tickets.push_front((ticket.clone(), now));
        s.tickets.truncate(8);
        Some(ticket)
    }

    /// A corp installs the suite: a permanent code (kept if it had one and did not cancel) and
    /// a fresh AuthCode for it. The template's corps' codes are secrets of `gettoken`, which
    /// the caller registers.
    pub(crate) fn install(&mut self, suite_id: &str, corpid: &str, now: Instant) -> Option<String> {
        let s = self.suites.get_mut(suite_id)?;
        let agentid = 1_000_002 + u32::try_from(s.corps.len()).unwrap_or(0);
        let corp = s.corps.entry(corpid.to_owned()).or_insert_with(|| Corp {
            permanent_code: random_token(LEN),
            state: CorpState::Installed,
            corp_name: format!("Corp {corpid}"),
            agentid,
            token: None,
            tokens_minted: 0,
            tickets: HashMap::new(),
        });
        if corp.state != CorpState::Installed {
            corp.permanent_code = random_token(LEN);
            corp.state = CorpState::Installed;
            corp.token = None;
        }
        let permanent_code = corp.permanent_code.clone();
        Some(new_auth_code(s, corpid, permanent_code, now))
    }

    /// A new permanent code for the corp (the old one refused from now on) and an AuthCode.
    pub(crate) fn reset_permanent_code(
        &mut self,
        suite_id: &str,
        corpid: &str,
        now: Instant,
    ) -> Option<(String, String)> {
        let s = self.suites.get_mut(suite_id)?;
        let corp = s.corps.get_mut(corpid)?;
        let old = std::mem::replace(&mut corp.permanent_code, random_token(LEN));
        corp.token = None;
        let permanent_code = corp.permanent_code.clone();
        Some((old, new_auth_code(s, corpid, permanent_code, now)))
    }

    /// Sets the corp's state; answers its permanent code (for `gettoken`'s registry).
    pub(crate) fn set_corp_state(
        &mut self,
        suite_id: &str,
        corpid: &str,
        state: CorpState,
    ) -> Option<String> {
        let corp = self.suites.get_mut(suite_id)?.corps.get_mut(corpid)?;
        corp.state = state;
        if state != CorpState::Installed {
            corp.token = None;
        }
        Some(corp.permanent_code.clone())
    }

    /// Ends every suite token of the suite now (WeCom ending them early).
    pub(crate) fn end_suite_tokens(&mut self, suite_id: &str, now: Instant) {
        if let Some(s) = self.suites.get_mut(suite_id) {
            for expires in s.suite_tokens.values_mut() {
                *expires = (*expires).min(now);
            }
        }
    }

    /// The suite and corp whose live token `token` is (WeCom's 40014 for any other, 42001 for
    /// one past its expiry).
    pub(crate) fn corp_of_token(
        &self,
        token: &str,
        now: Instant,
    ) -> Result<(String, String), WxError> {
        for (suite_id, suite) in &self.suites {
            for (corpid, corp) in &suite.corps {
                if let Some((t, expires)) = &corp.token {
                    if t == token {
                        return if *expires > now && corp.state == CorpState::Installed {
                            Ok((suite_id.clone(), corpid.clone()))
                        } else {
                            Err(WxError::TOKEN_EXPIRED)
                        };
                    }
                }
            }
        }
        Err(WxError::INVALID_ACCESS_TOKEN)
    }

    /// The corp's permanent code, for a call made with a live token of its suite.
    pub(crate) fn code_by_suite_token(
        &mut self,
        token: &str,
        corpid: &str,
        now: Instant,
    ) -> Result<String, WxError> {
        let suite = self.by_token(token, now)?;
        let corp = suite.corps.get(corpid).ok_or(WxError::WECOM_BAD_ARGS)?;
        Ok(corp.permanent_code.clone())
    }

    /// The corp's token is dropped as WeCom would after another holder of the permanent code
    /// asked for one: the next `get_corp_token` mints a new one, and the old one is refused.
    pub(crate) fn rotate_corp_token(&mut self, suite_id: &str, corpid: &str) -> bool {
        let corp = self
            .suites
            .get_mut(suite_id)
            .and_then(|s| s.corps.get_mut(corpid));
        corp.map(|c| c.token = None).is_some()
    }

    pub(crate) fn suite_tokens_minted(&self, suite_id: &str) -> u64 {
        self.suites
            .get(suite_id)
            .map_or(0, |s| s.suite_tokens_minted)
    }

    pub(crate) fn corp_tokens_minted(&self, suite_id: &str, corpid: &str) -> u64 {
        self.suites
            .get(suite_id)
            .and_then(|s| s.corps.get(corpid))
            .map_or(0, |c| c.tokens_minted)
    }

    pub(crate) fn permanent_code_of(&self, suite_id: &str, corpid: &str) -> Option<String> {
        let corp = self.suites.get(suite_id)?.corps.get(corpid)?;
        Some(corp.permanent_code.clone())
    }

    pub(crate) fn current_ticket(&self, suite_id: &str) -> Option<String> {
        Some(self.suites.get(suite_id)?.tickets.front()?.0.clone())
    }

    pub(crate) fn is_template(&self, suite_id: &str) -> bool {
        self.suites.get(suite_id).is_some_and(|s| s.cfg.template)
    }
}

fn new_auth_code(s: &mut Suite, corpid: &str, permanent_code: String, now: Instant) -> String {
    let code = random_token(LEN);
    s.auth_codes.insert(
        code.clone(),
        AuthCode {
            corpid: corpid.to_owned(),
            permanent_code,
            expires: now + AUTH_CODE_LIFETIME,
            used: false,
        },
    );
    code
}

/// The token while it lives (with the time it has left), else a new one.
fn reuse_or_mint(
    slot: &mut Option<(String, Instant)>,
    minted: &mut u64,
    lifetime: Duration,
    now: Instant,
) -> (String, u64) {
    if let Some((token, expires)) = slot.as_ref().filter(|(_, e)| *e > now) {
        return (
            token.clone(),
            expires.saturating_duration_since(now).as_secs(),
        );
    }
    let token = random_token(LEN);
    *slot = Some((token.clone(), now + lifetime));
    *minted += 1;
    (token, lifetime.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> WecomSuiteState {
        let suite = FakeSuite {
            suite_id: "wwsuite".into(),
            suite_secret: "secret".into(),
            token: "tok".into(),
            encoding_aes_key: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into(),
            template: false,
            provider_corpid: "wwprovider".into(),
        };
        WecomSuiteState::new(&[suite], &[("wwprovider".into(), "psecret".into())], 7200)
    }

    #[test]
    fn a_suite_token_needs_a_live_ticket_and_an_auth_code_works_once() {
        let mut s = state();
        let now = Instant::now();
        assert_eq!(
            s.suite_token("wwsuite", "secret", "none", now).unwrap_err(),
            WxError::WECOM_SUITE_TICKET_INVALID
        );
        let ticket = s.mint_ticket("wwsuite", now).unwrap();
        let late = now + SUITE_TICKET_LIFETIME;
        assert!(s.suite_token("wwsuite", "secret", &ticket, late).is_err());
        let (token, _) = s.suite_token("wwsuite", "secret", &ticket, now).unwrap();
        let code = s.install("wwsuite", "wwcorp", now).unwrap();
        let pc = s.permanent_code(&token, &code, now).unwrap();
        assert_eq!(pc.corpid, "wwcorp");
        assert_eq!(
            s.permanent_code(&token, &code, now).unwrap_err(),
            WxError::WECOM_AUTH_CODE_INVALID
        );
        let (a, _) = s
            .corp_token(&token, "wwcorp", &pc.permanent_code, now)
            .unwrap();
        let (b, _) = s
            .corp_token(&token, "wwcorp", &pc.permanent_code, now)
            .unwrap();
        assert_eq!(a, b, "the same corp token while it lives");
        assert_eq!(s.corp_tokens_minted("wwsuite", "wwcorp"), 1);
        s.set_corp_state("wwsuite", "wwcorp", CorpState::Cancelled);
        assert_eq!(
            s.corp_token(&token, "wwcorp", &pc.permanent_code, now)
                .unwrap_err(),
            WxError::WECOM_PERMANENT_CODE_INVALID
        );
        s.end_suite_tokens("wwsuite", now);
        assert_eq!(
            s.pre_auth_code(&token, now).unwrap_err(),
            WxError::WECOM_SUITE_TOKEN_EXPIRED
        );
    }
}

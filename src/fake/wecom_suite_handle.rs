//! The [`FakeWechat`] methods for WeCom suites, for tests in the same process: where a suite's
//! callbacks go, pushing tickets and install events, WeCom's URL check, and what the fake
//! holds and counts.

use super::wecom_suite::{event_xml, push, url_check, SuitePush};
use super::wecom_suite_state::CorpState;
use super::FakeWechat;

impl FakeWechat {
    /// Where the suite's callbacks go from now on (`None`: nowhere). False for an unknown suite.
    pub fn set_suite_callback_url(&self, suite_id: &str, url: Option<&str>) -> bool {
        self.lock()
            .wecom_suites()
            .0
            .set_callback_url(suite_id, url.map(str::to_owned))
    }

    /// Mints a suite ticket and pushes it (`suite_ticket`). `None`: unknown suite or no URL.
    pub async fn push_suite_ticket(&self, suite_id: &str) -> Option<(SuitePush, String)> {
        let ticket = {
            let mut s = self.lock();
            let (suites, now) = s.wecom_suites();
            suites.mint_ticket(suite_id, now)?
        };
        let xml = event_xml(suite_id, "suite_ticket", &[("SuiteTicket", &ticket)]);
        let pushed = push(&self.inner.state, suite_id, "suite_ticket", &xml).await?;
        Some((pushed, ticket))
    }

    /// A corp installs the suite; answers the AuthCode of its `create_auth` push, which is
    /// not sent (see [`FakeWechat::push_create_auth`]).
    pub fn install_suite(&self, suite_id: &str, corpid: &str) -> Option<String> {
        let mut s = self.lock();
        let (suites, now) = s.wecom_suites();
        let code = suites.install(suite_id, corpid, now)?;
        let template = suites.is_template(suite_id);
        let permanent = suites.permanent_code_of(suite_id, corpid)?;
        if template {
            s.set_wecom_app(corpid, &permanent, true);
        }
        Some(code)
    }

    /// Pushes `create_auth` with `auth_code` (again, for a retry).
    pub async fn push_create_auth(&self, suite_id: &str, auth_code: &str) -> Option<SuitePush> {
        let xml = event_xml(
            suite_id,
            "create_auth",
            &[("AuthCode", auth_code), ("State", "")],
        );
        push(&self.inner.state, suite_id, "create_auth", &xml).await
    }

    /// A corp changes its grant: `change_auth`.
    pub async fn push_change_auth(&self, suite_id: &str, corpid: &str) -> Option<SuitePush> {
        let xml = event_xml(suite_id, "change_auth", &[("AuthCorpId", corpid)]);
        push(&self.inner.state, suite_id, "change_auth", &xml).await
    }

    /// A corp uninstalls: its permanent code is refused from now on, and `cancel_auth` is
    /// pushed.
    pub async fn cancel_suite(&self, suite_id: &str, corpid: &str) -> Option<SuitePush> {
        self.set_corp_state(suite_id, corpid, CorpState::Cancelled)?;
        let xml = event_xml(suite_id, "cancel_auth", &[("AuthCorpId", corpid)]);
        push(&self.inner.state, suite_id, "cancel_auth", &xml).await
    }

    /// The corp's permanent code is replaced (the old one refused); `reset_permanent_code`
    /// is pushed with an AuthCode for the new one.
    pub async fn reset_permanent_code(&self, suite_id: &str, corpid: &str) -> Option<SuitePush> {
        let code = {
            let mut s = self.lock();
            let (suites, now) = s.wecom_suites();
            let (old, code) = suites.reset_permanent_code(suite_id, corpid, now)?;
            let new = suites.permanent_code_of(suite_id, corpid)?;
            if suites.is_template(suite_id) {
                s.set_wecom_app(corpid, &old, false);
                s.set_wecom_app(corpid, &new, true);
            }
            code
        };
        let xml = event_xml(suite_id, "reset_permanent_code", &[("AuthCode", &code)]);
        push(&self.inner.state, suite_id, "reset_permanent_code", &xml).await
    }

    /// Pushes an event of another kind (a contact change, say) with these fields.
    pub async fn push_suite_event(
        &self,
        suite_id: &str,
        info_type: &str,
        fields: &[(&str, &str)],
    ) -> Option<SuitePush> {
        let xml = event_xml(suite_id, info_type, fields);
        push(&self.inner.state, suite_id, info_type, &xml).await
    }

    /// Sets a corp's state without a push (`CodeRefused`: its permanent code answers 40084).
    pub fn set_corp_state(&self, suite_id: &str, corpid: &str, state: CorpState) -> Option<()> {
        let mut s = self.lock();
        let (suites, _) = s.wecom_suites();
        let code = suites.set_corp_state(suite_id, corpid, state)?;
        if suites.is_template(suite_id) {
            s.set_wecom_app(corpid, &code, state == CorpState::Installed);
        }
        Some(())
    }

    /// WeCom's URL check of the suite's callback URL, its `echostr` encrypted for
    /// `receive_id` (the provider's corpid by default): the outcome and the expected echo.
    pub async fn check_suite_url(
        &self,
        suite_id: &str,
        receive_id: Option<&str>,
    ) -> Option<(SuitePush, String)> {
        url_check(&self.inner.state, suite_id, receive_id).await
    }

    /// Ends the suite's tokens now, as WeCom may (42009 after).
    pub fn end_suite_tokens(&self, suite_id: &str) {
        let mut s = self.lock();
        let (suites, now) = s.wecom_suites();
        suites.end_suite_tokens(suite_id, now);
    }

    /// Calls of one service-provider endpoint (`get_corp_token`, `get_permanent_code`, ...).
    pub fn suite_calls(&self, endpoint: &str) -> u64 {
        self.lock().wecom_suites().0.calls(endpoint)
    }

    pub fn suite_tokens_minted(&self, suite_id: &str) -> u64 {
        self.lock().wecom_suites().0.suite_tokens_minted(suite_id)
    }

    pub fn corp_tokens_minted(&self, suite_id: &str, corpid: &str) -> u64 {
        self.lock()
            .wecom_suites()
            .0
            .corp_tokens_minted(suite_id, corpid)
    }

    /// How many tickets of `kind` (`jsapi`, `agent_config`) the fake minted for a corp.
    pub fn corp_tickets_minted(&self, suite_id: &str, corpid: &str, kind: &str) -> u64 {
        self.lock()
            .wecom_suites()
            .0
            .corp_tickets_minted(suite_id, corpid, kind)
    }

    /// The corp's permanent code, for tests that look for it where it must not be.
    pub fn permanent_code(&self, suite_id: &str, corpid: &str) -> Option<String> {
        self.lock()
            .wecom_suites()
            .0
            .permanent_code_of(suite_id, corpid)
    }

    /// Drops the corp's token behind wxtoken's back: the next `get_corp_token` mints another,
    /// and calls made with the old one are refused (40014). False for an unknown corp.
    pub fn rotate_corp_token(&self, suite_id: &str, corpid: &str) -> bool {
        self.lock()
            .wecom_suites()
            .0
            .rotate_corp_token(suite_id, corpid)
    }

    pub fn current_suite_ticket(&self, suite_id: &str) -> Option<String> {
        self.lock().wecom_suites().0.current_ticket(suite_id)
    }

    /// The auth type `set_session_info` gave a pre-auth code.
    pub fn session_auth_type(&self, suite_id: &str, pre_auth_code: &str) -> Option<u8> {
        self.lock()
            .wecom_suites()
            .0
            .session_of(suite_id, pre_auth_code)
    }
}

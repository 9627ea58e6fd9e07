//! The [`FakeWechat`] methods for platforms and authorizers, for tests in the same process:
//! the same operations as the `/_fake/component/*` controls, and what the fake holds.

use std::time::Duration;

use super::component_control::{authorize, bulk, check_event_url};
use super::component_state::{Authorized, AuthorizerState, ComponentState, ControlError};
use super::push::{self, Event, PushRecord};
use super::FakeWechat;

/// Platforms and authorizers, for tests in the same process (the `/_fake/component/*`
/// endpoints do the same over HTTP).
impl FakeWechat {
    /// Reads the component side under the fake's lock.
    fn read_component<T>(&self, read: impl FnOnce(&ComponentState) -> T) -> T {
        read(self.lock().component_ref().0)
    }

    /// Changes the component side under the fake's lock.
    fn change_component<T>(&self, change: impl FnOnce(&mut ComponentState) -> T) -> T {
        change(self.lock().component().0)
    }

    /// Where the platform's events go from now on (`None`: nowhere). Errors for an unknown
    /// platform or a URL that is not absolute http(s).
    pub fn set_event_url(&self, component_appid: &str, url: Option<&str>) -> Result<(), String> {
        if let Some(url) = url {
            check_event_url(url)?;
        }
        self.change_component(|c| c.set_event_url(component_appid, url.map(str::to_owned)))
            .map_err(|err| err.to_string())
    }

    /// How often tickets are pushed on their own from now on (zero: only on demand).
    pub fn set_ticket_push_interval(&self, every: Duration) {
        self.read_component(|c| c.set_ticket_interval(every));
    }

    /// Mints a verify ticket without pushing it: the newest from now on.
    pub fn mint_verify_ticket(&self, component_appid: &str) -> Result<String, ControlError> {
        let mut s = self.lock();
        let (component, m) = s.component();
        component.mint_ticket(component_appid, m.now)
    }

    /// Mints a verify ticket and pushes it to the event URL; the outcome is also recorded in
    /// [`FakeWechat::pushes`]. The ticket is in [`PushRecord::ticket`].
    pub async fn push_verify_ticket(
        &self,
        component_appid: &str,
    ) -> Result<PushRecord, ControlError> {
        push::push(&self.inner.state, component_appid, Event::Ticket).await
    }

    /// The newest verify ticket minted for that platform.
    pub fn current_verify_ticket(&self, component_appid: &str) -> Option<String> {
        self.read_component(|c| c.current_ticket(component_appid))
    }

    /// The latest component token minted for that platform.
    pub fn current_component_token(&self, component_appid: &str) -> Option<String> {
        self.read_component(|c| c.current_component_token(component_appid))
    }

    /// Component tokens minted for that platform.
    pub fn component_tokens_minted(&self, component_appid: &str) -> u64 {
        self.read_component(|c| c.component_tokens_minted(component_appid))
    }

    /// The merchant authorizes the platform, or authorizes it again: a new refresh token, these
    /// permission-set ids, the account's access tokens killed (re-authorization), and an
    /// authorization code for `api_query_auth`, valid 10 minutes on the fake clock. A pre-auth
    /// code, if given, must come from `api_create_preauthcode` and is used up.
    pub fn authorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
        func_info: &[u32],
        pre_auth_code: Option<&str>,
    ) -> Result<Authorized, ControlError> {
        authorize(
            &self.inner.state,
            component_appid,
            authorizer_appid,
            func_info,
            pre_auth_code,
        )
    }

    /// [`FakeWechat::authorize`], then the `authorized` or `updateauthorized` event pushed to
    /// the event URL with the code, as WeChat tells the platform.
    pub async fn authorize_and_push(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
        func_info: &[u32],
    ) -> Result<(Authorized, PushRecord), ControlError> {
        let authorized = self.authorize(component_appid, authorizer_appid, func_info, None)?;
        let event = Event::Authorization(authorized.clone());
        let record = push::push(&self.inner.state, component_appid, event).await?;
        Ok((authorized, record))
    }

    /// The account leaves the platform without a word: not listed any more, its refresh token
    /// answers 61023 and its access tokens die.
    pub fn unauthorize(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<(), ControlError> {
        let mut s = self.lock();
        let (component, m) = s.component();
        component.unauthorize(component_appid, authorizer_appid, m.now)
    }

    /// [`FakeWechat::unauthorize`], then the `unauthorized` event pushed to the event URL.
    pub async fn unauthorize_and_push(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<PushRecord, ControlError> {
        self.unauthorize(component_appid, authorizer_appid)?;
        let event = Event::Unauthorized(authorizer_appid.to_owned());
        push::push(&self.inner.state, component_appid, event).await
    }

    /// `n` new authorized accounts at once (appids from
    /// [`bulk_authorizer_appid`](super::bulk_authorizer_appid), skipping any taken), with
    /// refresh tokens as if `api_query_auth` had been called: they are what
    /// `api_get_authorizer_list` shows. Returns their appids.
    pub fn bulk_authorize(
        &self,
        component_appid: &str,
        n: u64,
    ) -> Result<Vec<String>, ControlError> {
        bulk(&self.inner.state, component_appid, n)
    }

    /// WeChat gives the account a new refresh token behind the server's back: the stored one
    /// answers 61023 while the list shows the new one, which this returns.
    pub fn rotate_refresh_token(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<String, ControlError> {
        self.change_component(|c| c.rotate_refresh_token(component_appid, authorizer_appid))
    }

    /// The account's refresh token stops working while the list still shows it: only a new
    /// authorization by the merchant helps.
    pub fn require_reauth(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Result<(), ControlError> {
        self.change_component(|c| c.require_reauth(component_appid, authorizer_appid))
    }

    /// The account's refresh token as WeChat holds it.
    pub fn authorizer_refresh_token(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Option<String> {
        self.read_component(|c| c.refresh_token(component_appid, authorizer_appid))
    }

    pub fn authorizer_state(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Option<AuthorizerState> {
        self.read_component(|c| c.authorizer_state(component_appid, authorizer_appid))
    }

    /// The latest access token minted for that account through that platform.
    pub fn current_authorizer_token(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Option<String> {
        self.read_component(|c| c.current_authorizer_token(component_appid, authorizer_appid))
    }

    /// Access tokens minted for that account through that platform (`api_query_auth` and
    /// `api_authorizer_token` together).
    pub fn authorizer_tokens_minted(&self, component_appid: &str, authorizer_appid: &str) -> u64 {
        self.read_component(|c| c.authorizer_tokens_minted(component_appid, authorizer_appid))
    }

    /// JS-SDK tickets getticket minted with that account's tokens, both types.
    pub fn authorizer_tickets_minted(&self, component_appid: &str, authorizer_appid: &str) -> u64 {
        self.read_component(|c| c.authorizer_tickets_minted(component_appid, authorizer_appid))
    }

    /// Accounts the platform has ever had, those that left included.
    pub fn authorizer_count(&self, component_appid: &str) -> usize {
        self.read_component(|c| c.authorizer_count(component_appid))
    }

    /// Every push so far (the last 1000), oldest first.
    pub fn pushes(&self) -> Vec<PushRecord> {
        self.read_component(|c| c.pushes())
    }
}

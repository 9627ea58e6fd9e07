//! The fake WeChat's third-party-platform (component) API over real HTTP: verify tickets and
//! component tokens, pre-auth and authorization codes, authorizer tokens and refresh tokens,
//! the authorizer list, faults, counters, the `/_fake/component/*` controls, and encrypted
//! event pushes to a receiver on 127.0.0.1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use awc::Client;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use wxtoken::fake::{
    bulk_authorizer_appid, AuthorizerState, ControlError, Endpoint, FakeConfig, FakePlatform,
    FakeWechat, Fault, Validity,
};
use wxtoken::push::crypto::{Envelope, MsgCrypto};
use wxtoken::push::event::{Event, EventKind};

use crate::support::helpers::eventually;

const COMPONENT: &str = "wx3c1f0a9d8e7b6a51";
const SECRET: &str = "the-component-secret";
const MSG_TOKEN: &str = "the-message-token";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const OTHER_COMPONENT: &str = "wx0000000000000b0b";
const OTHER_SECRET: &str = "the-other-secret";
const SHOP: &str = "wx5b3a1c9d7e8f6a42";
const CAFE: &str = "wx9f8e7d6c5b4a3921";

fn platform(component_appid: &str, secret: &str) -> FakePlatform {
    FakePlatform {
        component_appid: component_appid.into(),
        component_secret: secret.into(),
        token: MSG_TOKEN.into(),
        encoding_aes_key: AES_KEY.into(),
        event_url: None,
    }
}

/// A started fake with two platforms (no event URL, no timed pushes) and a client for it.
struct Wx {
    fake: FakeWechat,
    client: Client,
}

impl Wx {
    async fn start(tweak: impl FnOnce(&mut FakeConfig)) -> Wx {
        let mut cfg = FakeConfig {
            platforms: vec![
                platform(COMPONENT, SECRET),
                platform(OTHER_COMPONENT, OTHER_SECRET),
            ],
            ticket_push_interval: Duration::ZERO,
            ..FakeConfig::default()
        };
        tweak(&mut cfg);
        Wx {
            fake: FakeWechat::start(cfg).await.expect("fake starts"),
            client: Client::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.fake.base_url())
    }

    /// POST a JSON body to `/cgi-bin/component/{name}{query}`: HTTP 200 and a JSON answer.
    async fn call(&self, name: &str, query: &str, body: Value) -> Value {
        self.call_raw(name, query, body.to_string()).await
    }

    async fn call_raw(&self, name: &str, query: &str, body: String) -> Value {
        let url = self.url(&format!("/cgi-bin/component/{name}{query}"));
        let mut res = self
            .client
            .post(url)
            .insert_header(("content-type", "application/json"))
            .send_body(body)
            .await
            .expect("request answered");
        assert_eq!(res.status().as_u16(), 200);
        serde_json::from_slice(&res.body().await.expect("body read")).expect("JSON body")
    }

    /// A component-token call with the token under `component_access_token`.
    async fn with_token(&self, name: &str, token: &str, body: Value) -> Value {
        self.call(name, &format!("?component_access_token={token}"), body)
            .await
    }

    async fn component_token_with(&self, ticket: &str) -> Value {
        self.call(
            "api_component_token",
            "",
            json!({
                "component_appid": COMPONENT,
                "component_appsecret": SECRET,
                "component_verify_ticket": ticket,
            }),
        )
        .await
    }

    /// A fresh component token minted with a fresh ticket.
    async fn component_token(&self) -> String {
        let ticket = self.fake.mint_verify_ticket(COMPONENT).expect("platform");
        let body = self.component_token_with(&ticket).await;
        str_field(&body, "component_access_token")
    }

    async fn query_auth(&self, token: &str, code: &str) -> Value {
        self.with_token(
            "api_query_auth",
            token,
            json!({ "component_appid": COMPONENT, "authorization_code": code }),
        )
        .await
    }

    async fn authorizer_token(&self, token: &str, appid: &str, refresh: &str) -> Value {
        self.with_token(
            "api_authorizer_token",
            token,
            json!({
                "component_appid": COMPONENT,
                "authorizer_appid": appid,
                "authorizer_refresh_token": refresh,
            }),
        )
        .await
    }

    async fn preauth(&self, token: &str) -> Value {
        self.with_token(
            "api_create_preauthcode",
            token,
            json!({ "component_appid": COMPONENT }),
        )
        .await
    }

    async fn info(&self, token: &str, appid: &str) -> Value {
        self.with_token(
            "api_get_authorizer_info",
            token,
            json!({ "component_appid": COMPONENT, "authorizer_appid": appid }),
        )
        .await
    }

    async fn list(&self, token: &str, offset: u64, count: u64) -> Value {
        self.with_token(
            "api_get_authorizer_list",
            token,
            json!({ "component_appid": COMPONENT, "offset": offset, "count": count }),
        )
        .await
    }

    /// Authorizes `appid` and redeems the code: the account's refresh token.
    async fn authorized(&self, token: &str, appid: &str) -> String {
        let a = self
            .fake
            .authorize(COMPONENT, appid, &[1, 15], None)
            .expect("authorized");
        let info = self.query_auth(token, &a.authorization_code).await;
        str_field(&info["authorization_info"], "authorizer_refresh_token")
    }

    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let mut res = self
            .client
            .post(self.url(path))
            .send_json(&body)
            .await
            .expect("control request answered");
        let bytes = res.body().await.expect("body read");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn get_json(&self, path: &str) -> Value {
        let mut res = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request answered");
        assert_eq!(res.status().as_u16(), 200);
        serde_json::from_slice(&res.body().await.expect("body read")).expect("JSON body")
    }

    async fn probe(&self, token: &str) -> Value {
        self.get_json(&format!("/cgi-bin/get_api_domain_ip?access_token={token}"))
            .await
    }
}

fn str_field(v: &Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
        .to_owned()
}

fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

fn assert_wx_error(v: &Value, code: i64, msg: &str) {
    assert_eq!(v, &json!({ "errcode": code, "errmsg": msg }));
}

const NOT_LATEST: &str = "invalid credential, access_token is invalid or not latest";

// ---- verify tickets and api_component_token ------------------------------------------------

#[actix_web::test]
async fn component_token_takes_the_newest_ticket_or_the_one_before_while_they_live() {
    let wx = Wx::start(|_| {}).await;
    let oldest = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    let previous = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    let newest = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    assert_ne!(previous, newest);
    assert_eq!(
        wx.fake.current_verify_ticket(COMPONENT),
        Some(newest.clone())
    );

    let body = wx.component_token_with(&newest).await;
    assert_eq!(body["expires_in"], 7200, "{body}");
    assert!(!str_field(&body, "component_access_token").is_empty());
    assert_eq!(errcode(&wx.component_token_with(&previous).await), 0);
    assert_wx_error(
        &wx.component_token_with(&oldest).await,
        61006,
        "component ticket is invalid",
    );

    // Tickets live 12 hours on the fake clock.
    wx.fake.advance_clock(Duration::from_secs(12 * 3600 - 1));
    assert_eq!(errcode(&wx.component_token_with(&newest).await), 0);
    wx.fake.advance_clock(Duration::from_secs(1));
    for ticket in [&newest, &previous, &oldest] {
        assert_wx_error(
            &wx.component_token_with(ticket).await,
            61005,
            "component ticket is expired",
        );
    }
    assert_eq!(wx.fake.component_tokens_minted(COMPONENT), 3);
}

#[actix_web::test]
async fn component_token_errcodes() {
    let wx = Wx::start(|_| {}).await;
    let ticket = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    let cases = [
        (json!({}), 41002, "appid missing"),
        (
            json!({ "component_appid": "wxnobody", "component_appsecret": SECRET,
                    "component_verify_ticket": ticket }),
            61011,
            "invalid component",
        ),
        (
            json!({ "component_appid": COMPONENT, "component_verify_ticket": ticket }),
            41004,
            "appsecret missing",
        ),
        (
            json!({ "component_appid": COMPONENT, "component_appsecret": OTHER_SECRET,
                    "component_verify_ticket": ticket }),
            40125,
            "invalid appsecret",
        ),
        (
            json!({ "component_appid": COMPONENT, "component_appsecret": SECRET }),
            61006,
            "component ticket is invalid",
        ),
        (
            json!({ "component_appid": COMPONENT, "component_appsecret": SECRET,
                    "component_verify_ticket": "" }),
            61006,
            "component ticket is invalid",
        ),
        (
            json!({ "component_appid": COMPONENT, "component_appsecret": SECRET,
                    "component_verify_ticket": "ticket@@@forged" }),
            61006,
            "component ticket is invalid",
        ),
        // Another platform's ticket is no ticket of this one.
        (
            json!({ "component_appid": OTHER_COMPONENT, "component_appsecret": OTHER_SECRET,
                    "component_verify_ticket": ticket }),
            61006,
            "component ticket is invalid",
        ),
    ];
    for (body, code, msg) in cases {
        let answer = wx.call("api_component_token", "", body.clone()).await;
        assert_wx_error(&answer, code, msg);
    }
    let not_json = wx
        .call_raw("api_component_token", "", "{not json".into())
        .await;
    assert_wx_error(&not_json, 47001, "data format error");
    let (status, body) = {
        let mut res = wx
            .client
            .get(wx.url("/cgi-bin/component/api_component_token"))
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.body().await.unwrap())
    };
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_wx_error(&body, 43002, "require POST method");
    assert_eq!(wx.fake.component_tokens_minted(COMPONENT), 0);
    assert_eq!(wx.fake.calls(Endpoint::ComponentToken), 10);
}

#[actix_web::test]
async fn each_component_token_replaces_the_previous_one_like_an_app_token() {
    let wx = Wx::start(|c| c.overlap_secs = 10).await;
    let a = wx.component_token().await;
    let b = wx.component_token().await;
    let c = wx.component_token().await;
    assert_eq!(wx.fake.current_component_token(COMPONENT), Some(c.clone()));
    assert_eq!(wx.fake.validity(&a), Validity::Replaced);
    assert_eq!(wx.fake.validity(&b), Validity::Valid, "overlaps for 10 s");
    assert_wx_error(&wx.preauth(&a).await, 40001, NOT_LATEST);
    assert_eq!(errcode(&wx.preauth(&b).await), 0);

    wx.fake.advance_clock(Duration::from_secs(10));
    assert_eq!(wx.fake.validity(&b), Validity::Replaced);
    assert_wx_error(&wx.preauth(&b).await, 40001, NOT_LATEST);
    assert_eq!(errcode(&wx.preauth(&c).await), 0);

    wx.fake.advance_clock(Duration::from_secs(7200));
    assert_eq!(wx.fake.validity(&c), Validity::Expired);
    assert_wx_error(&wx.preauth(&c).await, 42001, "access_token expired");
}

// ---- api_start_push_ticket ------------------------------------------------------------------

#[actix_web::test]
async fn start_push_ticket_checks_the_secret_and_answers_ok() {
    let wx = Wx::start(|_| {}).await;
    let start = |body: Value| wx.call("api_start_push_ticket", "", body);
    assert_wx_error(
        &start(json!({ "component_appid": COMPONENT, "component_secret": SECRET })).await,
        0,
        "ok",
    );
    assert_wx_error(
        &start(json!({ "component_appid": COMPONENT, "component_secret": "nope" })).await,
        40125,
        "invalid appsecret",
    );
    assert_wx_error(
        &start(json!({ "component_appid": "wxnobody", "component_secret": SECRET })).await,
        61011,
        "invalid component",
    );
    assert_wx_error(
        &start(json!({ "component_appid": COMPONENT })).await,
        41004,
        "appsecret missing",
    );
    assert_eq!(wx.fake.calls(Endpoint::StartPushTicket), 4);
    // No event URL: nothing to push to, and no ticket is minted for nobody.
    assert!(wx.fake.pushes().is_empty());
    assert_eq!(wx.fake.current_verify_ticket(COMPONENT), None);
}

// ---- pre-auth codes and the component-token check -------------------------------------------

#[actix_web::test]
async fn preauthcode_takes_the_token_under_either_name_and_works_once() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let body = json!({ "component_appid": COMPONENT });
    let a = wx
        .call(
            "api_create_preauthcode",
            &format!("?component_access_token={token}"),
            body.clone(),
        )
        .await;
    let b = wx
        .call(
            "api_create_preauthcode",
            &format!("?access_token={token}"),
            body.clone(),
        )
        .await;
    assert_eq!(a["expires_in"], 1800, "{a}");
    let (a, b) = (
        str_field(&a, "pre_auth_code"),
        str_field(&b, "pre_auth_code"),
    );
    assert_ne!(a, b);

    let used = wx.fake.authorize(COMPONENT, SHOP, &[1], Some(&a)).unwrap();
    assert_eq!(used.pre_auth_code, a);
    assert_eq!(
        wx.fake.authorize(COMPONENT, SHOP, &[1], Some(&a)),
        Err(ControlError::PreAuthCode),
        "a pre-auth code works once"
    );
    assert_eq!(
        wx.fake
            .authorize(COMPONENT, SHOP, &[1], Some("preauthcode@@@forged")),
        Err(ControlError::PreAuthCode)
    );
    wx.fake.advance_clock(Duration::from_secs(1800));
    assert_eq!(
        wx.fake.authorize(COMPONENT, CAFE, &[1], Some(&b)),
        Err(ControlError::PreAuthCode),
        "expired"
    );
}

#[actix_web::test]
async fn component_token_check_errcodes() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let body = json!({ "component_appid": COMPONENT });
    let no_token = wx.call("api_create_preauthcode", "", body).await;
    assert_wx_error(&no_token, 41001, "access_token missing");
    assert_wx_error(&wx.preauth("forged").await, 40001, NOT_LATEST);
    let no_appid = wx
        .with_token("api_create_preauthcode", &token, json!({}))
        .await;
    assert_wx_error(&no_appid, 41002, "appid missing");
    let other = wx
        .with_token(
            "api_create_preauthcode",
            &token,
            json!({ "component_appid": OTHER_COMPONENT }),
        )
        .await;
    assert_wx_error(&other, 61011, "invalid component");
    // An authorizer token is an account's token, not the platform's.
    let refresh = wx.authorized(&token, SHOP).await;
    let shop = wx.authorizer_token(&token, SHOP, &refresh).await;
    let shop = str_field(&shop, "authorizer_access_token");
    assert_wx_error(&wx.preauth(&shop).await, 40001, NOT_LATEST);
}

// ---- api_query_auth ---------------------------------------------------------------------------

#[actix_web::test]
async fn query_auth_redeems_an_authorization_code_once() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let a = wx
        .fake
        .authorize(COMPONENT, SHOP, &[1, 15, 17], None)
        .unwrap();
    assert_eq!(a.info_type, "authorized");
    assert_eq!(a.expires_in, 600);

    let body = wx.query_auth(&token, &a.authorization_code).await;
    let info = &body["authorization_info"];
    let access = str_field(info, "authorizer_access_token");
    let refresh = str_field(info, "authorizer_refresh_token");
    assert_eq!(
        body,
        json!({ "authorization_info": {
            "authorizer_appid": SHOP,
            "authorizer_access_token": access,
            "expires_in": 7200,
            "authorizer_refresh_token": refresh,
            "func_info": [
                { "funcscope_category": { "id": 1 } },
                { "funcscope_category": { "id": 15 } },
                { "funcscope_category": { "id": 17 } },
            ],
        }})
    );
    assert_eq!(
        wx.fake.authorizer_refresh_token(COMPONENT, SHOP),
        Some(refresh)
    );
    assert_eq!(wx.fake.validity(&access), Validity::Valid);
    assert_eq!(wx.probe(&access).await, json!({ "ip_list": ["127.0.0.1"] }));

    assert_wx_error(
        &wx.query_auth(&token, &a.authorization_code).await,
        61009,
        "code is invalid",
    );
    assert_wx_error(
        &wx.query_auth(&token, "queryauthcode@@@forged").await,
        61009,
        "code is invalid",
    );
    let late = wx.fake.authorize(COMPONENT, CAFE, &[1], None).unwrap();
    wx.fake.advance_clock(Duration::from_secs(600));
    let token = wx.component_token().await;
    assert_wx_error(
        &wx.query_auth(&token, &late.authorization_code).await,
        61010,
        "code is expired",
    );
    assert_eq!(wx.fake.authorizer_tokens_minted(COMPONENT, SHOP), 1);
    assert_eq!(wx.fake.authorizer_tokens_minted(COMPONENT, CAFE), 0);
}

// ---- api_authorizer_token and refresh tokens --------------------------------------------------

#[actix_web::test]
async fn authorizer_token_mints_a_replacement_and_answers_the_refresh_token() {
    let wx = Wx::start(|c| c.overlap_secs = 10).await;
    let token = wx.component_token().await;
    let refresh = wx.authorized(&token, SHOP).await;
    let first = wx.fake.current_authorizer_token(COMPONENT, SHOP).unwrap();

    let body = wx.authorizer_token(&token, SHOP, &refresh).await;
    let second = str_field(&body, "authorizer_access_token");
    assert_eq!(
        body,
        json!({
            "authorizer_access_token": second,
            "expires_in": 7200,
            "authorizer_refresh_token": refresh,
        })
    );
    let third = str_field(
        &wx.authorizer_token(&token, SHOP, &refresh).await,
        "authorizer_access_token",
    );
    assert_eq!(wx.fake.validity(&first), Validity::Replaced);
    assert_eq!(wx.fake.validity(&second), Validity::Valid);
    wx.fake.advance_clock(Duration::from_secs(10));
    assert_eq!(wx.fake.validity(&second), Validity::Replaced);
    assert_eq!(wx.fake.validity(&third), Validity::Valid);
    assert_eq!(wx.fake.authorizer_tokens_minted(COMPONENT, SHOP), 3);
}

#[actix_web::test]
async fn authorizer_token_errcodes() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let refresh = wx.authorized(&token, SHOP).await;
    assert_wx_error(
        &wx.authorizer_token(&token, SHOP, "refreshtoken@@@wrong")
            .await,
        61023,
        "refresh_token is invalid",
    );
    assert_wx_error(
        &wx.authorizer_token(&token, SHOP, "").await,
        61023,
        "refresh_token is invalid",
    );
    assert_wx_error(
        &wx.authorizer_token(&token, CAFE, &refresh).await,
        61003,
        "component is not authorized by this account",
    );
    let missing = wx
        .with_token(
            "api_authorizer_token",
            &token,
            json!({ "component_appid": COMPONENT, "authorizer_refresh_token": refresh }),
        )
        .await;
    assert_wx_error(&missing, 41002, "appid missing");
    assert_eq!(wx.fake.authorizer_tokens_minted(COMPONENT, SHOP), 1);
}

#[actix_web::test]
async fn a_refresh_token_rotated_behind_the_servers_back_is_listed_anew() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let stored = wx.authorized(&token, SHOP).await;
    let access = wx.fake.current_authorizer_token(COMPONENT, SHOP).unwrap();
    let fresh = wx.fake.rotate_refresh_token(COMPONENT, SHOP).unwrap();
    assert_ne!(fresh, stored);

    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &stored).await),
        61023
    );
    let list = wx.list(&token, 0, 500).await;
    assert_eq!(list["list"][0]["refresh_token"], json!(fresh), "{list}");
    assert_eq!(errcode(&wx.authorizer_token(&token, SHOP, &fresh).await), 0);
    // The account did not change its mind: the token it had kept working until replaced.
    assert_eq!(wx.fake.validity(&access), Validity::Valid);
}

#[actix_web::test]
async fn an_account_that_needs_reauthorization_stays_listed_with_its_dead_refresh_token() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let refresh = wx.authorized(&token, SHOP).await;
    wx.fake.require_reauth(COMPONENT, SHOP).unwrap();
    assert_eq!(
        wx.fake.authorizer_state(COMPONENT, SHOP),
        Some(AuthorizerState::NeedsReauth)
    );
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &refresh).await),
        61023
    );
    let list = wx.list(&token, 0, 10).await;
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["list"][0]["refresh_token"], json!(refresh));

    // Only a new authorization helps.
    let again = wx.fake.authorize(COMPONENT, SHOP, &[1], None).unwrap();
    assert_eq!(again.info_type, "updateauthorized");
    let info = wx.query_auth(&token, &again.authorization_code).await;
    let new_refresh = str_field(&info["authorization_info"], "authorizer_refresh_token");
    assert_ne!(new_refresh, refresh);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &new_refresh).await),
        0
    );
}

#[actix_web::test]
async fn reauthorization_kills_the_accounts_tokens_and_its_old_refresh_token() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let old_refresh = wx.authorized(&token, SHOP).await;
    let access = wx.fake.current_authorizer_token(COMPONENT, SHOP).unwrap();

    let again = wx.fake.authorize(COMPONENT, SHOP, &[1, 2], None).unwrap();
    assert_eq!(again.info_type, "updateauthorized");
    assert_eq!(wx.fake.validity(&access), Validity::Replaced);
    assert_wx_error(&wx.probe(&access).await, 40001, NOT_LATEST);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &old_refresh).await),
        61023
    );
    let info = wx.query_auth(&token, &again.authorization_code).await;
    assert_eq!(
        info["authorization_info"]["func_info"],
        json!([{ "funcscope_category": { "id": 1 } }, { "funcscope_category": { "id": 2 } }])
    );
}

#[actix_web::test]
async fn an_account_that_left_is_not_listed_and_its_tokens_die() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let shop_refresh = wx.authorized(&token, SHOP).await;
    wx.authorized(&token, CAFE).await;
    let access = wx.fake.current_authorizer_token(COMPONENT, SHOP).unwrap();

    wx.fake.unauthorize(COMPONENT, SHOP).unwrap();
    assert_eq!(
        wx.fake.authorizer_state(COMPONENT, SHOP),
        Some(AuthorizerState::Left)
    );
    assert_eq!(wx.fake.validity(&access), Validity::Replaced);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &shop_refresh).await),
        61023
    );
    let list = wx.list(&token, 0, 10).await;
    assert_eq!(list["total_count"], 1);
    assert_eq!(list["list"][0]["authorizer_appid"], CAFE);
    assert_eq!(errcode(&wx.info(&token, SHOP).await), 61003);

    // Coming back is a new authorization, not an update.
    let back = wx.fake.authorize(COMPONENT, SHOP, &[1], None).unwrap();
    assert_eq!(back.info_type, "authorized");
    assert_eq!(
        wx.fake.unauthorize(COMPONENT, "wxnobody"),
        Err(ControlError::UnknownAuthorizer("wxnobody".into()))
    );
}

// ---- api_get_authorizer_info and api_get_authorizer_list -------------------------------------

#[actix_web::test]
async fn authorizer_info_shows_the_refresh_token_once_query_auth_was_called() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let a = wx.fake.authorize(COMPONENT, SHOP, &[1, 15], None).unwrap();
    let before = wx.info(&token, SHOP).await;
    assert_eq!(
        before["authorization_info"],
        json!({
            "authorizer_appid": SHOP,
            "authorizer_refresh_token": "",
            "func_info": [{ "funcscope_category": { "id": 1 } }, { "funcscope_category": { "id": 15 } }],
        })
    );
    assert_eq!(wx.list(&token, 0, 10).await["list"][0]["refresh_token"], "");
    assert!(
        before["authorizer_info"]["nick_name"].is_string(),
        "{before}"
    );

    let redeemed = wx.query_auth(&token, &a.authorization_code).await;
    let refresh = str_field(&redeemed["authorization_info"], "authorizer_refresh_token");
    let after = wx.info(&token, SHOP).await;
    assert_eq!(
        after["authorization_info"]["authorizer_refresh_token"],
        json!(refresh)
    );
    assert_eq!(wx.fake.calls(Endpoint::GetAuthorizerInfo), 2);
}

#[actix_web::test]
async fn authorizer_list_pages_in_a_stable_order_up_to_500_at_a_time() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let made = wx.fake.bulk_authorize(COMPONENT, 1200).unwrap();
    assert_eq!(made.len(), 1200);
    assert_eq!(made[0], bulk_authorizer_appid(0));

    let mut seen = Vec::new();
    for (offset, expected) in [(0, 500), (500, 500), (1000, 200), (1200, 0)] {
        let page = wx.list(&token, offset, 500).await;
        assert_eq!(page["total_count"], 1200);
        let list = page["list"].as_array().expect("a list");
        assert_eq!(list.len(), expected, "page at {offset}");
        for row in list {
            let appid = str_field(row, "authorizer_appid");
            let refresh = str_field(row, "refresh_token");
            assert_eq!(
                wx.fake.authorizer_refresh_token(COMPONENT, &appid),
                Some(refresh)
            );
            assert!(row["auth_time"].as_u64().unwrap() > 1_600_000_000, "{row}");
            seen.push(appid);
        }
    }
    assert_eq!(seen, made, "every account once, in authorization order");
    assert_eq!(wx.list(&token, 0, 500).await, wx.list(&token, 0, 500).await);

    assert_wx_error(
        &wx.list(&token, 0, 501).await,
        40170,
        "args count exceed count limit",
    );
    let no_count = wx
        .with_token(
            "api_get_authorizer_list",
            &token,
            json!({ "component_appid": COMPONENT, "offset": 0 }),
        )
        .await;
    assert_wx_error(&no_count, 40097, "invalid args");
    // The other platform has none of them.
    assert_eq!(wx.fake.authorizer_count(OTHER_COMPONENT), 0);
}

#[actix_web::test]
async fn bulk_creation_of_10000_authorizers_works_for_every_one() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let started = Instant::now();
    let made = wx.fake.bulk_authorize(COMPONENT, 10_000).unwrap();
    let took = started.elapsed();
    assert_eq!(made.len(), 10_000);
    // A figure, not a verdict: timed assertions fail on a busy shared machine.
    println!("bulk_authorize(10,000) took {took:?}");

    let page = wx.list(&token, 9_999, 500).await;
    assert_eq!(page["total_count"], 10_000);
    let last = &page["list"][0];
    assert_eq!(
        last["authorizer_appid"],
        json!(bulk_authorizer_appid(9_999))
    );
    let refresh = str_field(last, "refresh_token");
    let minted = wx
        .authorizer_token(&token, &bulk_authorizer_appid(9_999), &refresh)
        .await;
    assert_eq!(errcode(&minted), 0, "{minted}");

    // More come after, without reusing an appid.
    let more = wx.fake.bulk_authorize(COMPONENT, 2).unwrap();
    assert_eq!(
        more,
        [bulk_authorizer_appid(10_000), bulk_authorizer_appid(10_001)]
    );
}

// ---- authorizer tokens elsewhere ---------------------------------------------------------------

#[actix_web::test]
async fn an_authorizer_token_gets_the_accounts_js_sdk_tickets_and_a_component_token_none() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    wx.authorized(&token, SHOP).await;
    let access = wx.fake.current_authorizer_token(COMPONENT, SHOP).unwrap();
    let ticket = wx
        .get_json(&format!(
            "/cgi-bin/ticket/getticket?access_token={access}&type=jsapi"
        ))
        .await;
    assert_eq!(errcode(&ticket), 0, "{ticket}");
    let ticket = str_field(&ticket, "ticket");
    assert_eq!(wx.fake.ticket_validity(&ticket), Validity::Valid);
    assert_eq!(wx.fake.authorizer_tickets_minted(COMPONENT, SHOP), 1);

    let refused = wx
        .get_json(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type=jsapi"
        ))
        .await;
    assert_wx_error(&refused, 40001, NOT_LATEST);
    // The probe answers for every token the fake minted, the component's too.
    assert_eq!(wx.probe(&token).await, json!({ "ip_list": ["127.0.0.1"] }));
}

// ---- faults, delay, counters ------------------------------------------------------------------

#[actix_web::test]
async fn faults_aimed_at_a_component_endpoint_hit_it_once_and_nothing_else() {
    let wx = Wx::start(|c| c.apps = vec![("wxapp".into(), "app-secret".into())]).await;
    let ticket = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    wx.fake
        .inject_at(Endpoint::ComponentToken, Fault::Errcode(61005), 1);
    // An app token call is not the endpoint aimed at.
    let app = wx
        .get_json("/cgi-bin/token?grant_type=client_credential&appid=wxapp&secret=app-secret")
        .await;
    assert_eq!(errcode(&app), 0, "{app}");
    assert_wx_error(
        &wx.component_token_with(&ticket).await,
        61005,
        "component ticket is expired",
    );
    let token = str_field(
        &wx.component_token_with(&ticket).await,
        "component_access_token",
    );

    let refresh = wx.authorized(&token, SHOP).await;
    wx.fake
        .inject_at(Endpoint::AuthorizerToken, Fault::Errcode(61023), 1);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &refresh).await),
        61023
    );
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &refresh).await),
        0
    );

    // Faults for the app endpoints never reach the component endpoints.
    wx.fake.inject(Fault::Errcode(-1), 1);
    assert_eq!(errcode(&wx.list(&token, 0, 10).await), 0);
    wx.fake.clear_faults();

    // An HTTP fault, over the control endpoint.
    let (status, _) = wx
        .control(
            "/_fake/fault",
            json!({ "kind": "http", "status": 502, "endpoint": "api_get_authorizer_list" }),
        )
        .await;
    assert_eq!(status, 204);
    let res = wx
        .client
        .post(wx.url(&format!(
            "/cgi-bin/component/api_get_authorizer_list?access_token={token}"
        )))
        .send_json(&json!({ "component_appid": COMPONENT, "offset": 0, "count": 10 }))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 502);
    assert_eq!(errcode(&wx.list(&token, 0, 10).await), 0);

    let (status, _) = wx
        .control(
            "/_fake/fault",
            json!({ "kind": "drop", "endpoint": "get_api_domain_ip" }),
        )
        .await;
    assert_eq!(status, 400, "the probe never takes faults");
    let (status, _) = wx
        .control(
            "/_fake/fault",
            json!({ "kind": "drop", "endpoint": "nope" }),
        )
        .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn a_slow_fault_and_the_answer_delay_hold_component_calls() {
    let wx = Wx::start(|c| c.answer_delay = Duration::from_millis(150)).await;
    let ticket = wx.fake.mint_verify_ticket(COMPONENT).unwrap();
    let started = Instant::now();
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 0);
    assert!(started.elapsed() >= Duration::from_millis(150));

    wx.fake.set_answer_delay(Duration::ZERO);
    wx.fake.inject_at(
        Endpoint::ComponentToken,
        Fault::Slow(Duration::from_millis(300)),
        1,
    );
    let started = Instant::now();
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 0);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(wx.fake.peak_in_flight(), 1);
}

#[actix_web::test]
async fn counters_report_every_component_endpoint() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    wx.authorized(&token, SHOP).await;
    wx.list(&token, 0, 10).await;
    wx.list(&token, 0, 501).await;
    wx.call(
        "api_start_push_ticket",
        "",
        json!({ "component_appid": COMPONENT, "component_secret": SECRET }),
    )
    .await;
    let counters = wx.get_json("/_fake/counters").await;
    assert_eq!(
        counters["component_calls"],
        json!({
            "api_component_token": 1,
            "api_start_push_ticket": 1,
            "api_create_preauthcode": 0,
            "api_query_auth": 1,
            "api_authorizer_token": 0,
            "api_get_authorizer_info": 0,
            "api_get_authorizer_list": 2,
        })
    );
    assert_eq!(wx.fake.calls(Endpoint::GetAuthorizerList), 2);
    assert_eq!(counters["calls"]["token"], 0);
    let stats = wx.get_json("/_fake/stats").await;
    assert_eq!(stats["component_calls"], counters["component_calls"]);

    // A fake without platforms keeps the app-only shape.
    let plain = FakeWechat::start(FakeConfig::default()).await.unwrap();
    let mut res = wx
        .client
        .get(format!("{}/_fake/counters", plain.base_url()))
        .send()
        .await
        .unwrap();
    let plain: Value = serde_json::from_slice(&res.body().await.unwrap()).unwrap();
    assert!(plain.get("component_calls").is_none(), "{plain}");
}

// ---- controls over HTTP -----------------------------------------------------------------------

#[actix_web::test]
async fn control_endpoints_authorize_rotate_and_unauthorize() {
    let wx = Wx::start(|_| {}).await;
    let (status, minted) = wx
        .control(
            "/_fake/component/ticket",
            json!({ "component_appid": COMPONENT }),
        )
        .await;
    assert_eq!(status, 200);
    let ticket = str_field(&minted, "ticket");
    let token = str_field(
        &wx.component_token_with(&ticket).await,
        "component_access_token",
    );

    let (status, a) = wx
        .control(
            "/_fake/component/authorize",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP, "func_info": [1, 4] }),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(a["info_type"], "authorized");
    assert_eq!(a["expires_in"], 600);
    let info = wx
        .query_auth(&token, &str_field(&a, "authorization_code"))
        .await;
    let stored = str_field(&info["authorization_info"], "authorizer_refresh_token");

    let (status, rotated) = wx
        .control(
            "/_fake/component/rotate_refresh_token",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
        )
        .await;
    assert_eq!(status, 200);
    let fresh = str_field(&rotated, "refresh_token");
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &stored).await),
        61023
    );
    assert_eq!(errcode(&wx.authorizer_token(&token, SHOP, &fresh).await), 0);

    let (status, _) = wx
        .control(
            "/_fake/component/needs_reauth",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        errcode(&wx.authorizer_token(&token, SHOP, &fresh).await),
        61023
    );
    assert_eq!(wx.list(&token, 0, 10).await["total_count"], 1);

    let (status, _) = wx
        .control(
            "/_fake/component/unauthorize",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(wx.list(&token, 0, 10).await["total_count"], 0);

    let (status, bulk) = wx
        .control(
            "/_fake/component/bulk",
            json!({ "component_appid": COMPONENT, "count": 3 }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        bulk,
        json!({ "created": 3, "first": bulk_authorizer_appid(0), "last": bulk_authorizer_appid(2) })
    );
    assert_eq!(wx.list(&token, 0, 10).await["total_count"], 3);
}

#[actix_web::test]
async fn control_endpoints_reject_what_they_cannot_do() {
    let wx = Wx::start(|_| {}).await;
    let cases = [
        (
            "/_fake/component/ticket",
            json!({ "component_appid": "wxnobody" }),
            404,
        ),
        (
            "/_fake/component/ticket",
            json!({ "component": COMPONENT }),
            400,
        ),
        (
            "/_fake/component/ticket",
            json!({ "component_appid": COMPONENT, "push": true }),
            409,
        ),
        (
            "/_fake/component/authorize",
            json!({ "component_appid": COMPONENT, "authorizer_appid": "bad appid" }),
            400,
        ),
        (
            "/_fake/component/authorize",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP,
                    "pre_auth_code": "preauthcode@@@forged" }),
            400,
        ),
        (
            "/_fake/component/needs_reauth",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP }),
            404,
        ),
        (
            "/_fake/component/event_url",
            json!({ "component_appid": COMPONENT, "url": "ftp://127.0.0.1/x" }),
            400,
        ),
        (
            "/_fake/component/event_url",
            json!({ "component_appid": COMPONENT, "url": "/relative" }),
            400,
        ),
        (
            "/_fake/component/bulk",
            json!({ "component_appid": COMPONENT, "count": 2_000_000 }),
            400,
        ),
        (
            "/_fake/component/ticket_interval",
            json!({ "secs": -1 }),
            400,
        ),
    ];
    for (path, body, status) in cases {
        assert_eq!(
            wx.control(path, body.clone()).await.0,
            status,
            "{path} {body}"
        );
    }
    assert_eq!(
        wx.fake.current_verify_ticket(COMPONENT),
        None,
        "nothing minted"
    );
    assert_eq!(wx.fake.authorizer_count(COMPONENT), 0);
}

#[actix_web::test]
async fn platform_secrets_stay_out_of_debug_output() {
    let cfg = FakeConfig {
        platforms: vec![platform(COMPONENT, SECRET)],
        ..FakeConfig::default()
    };
    let debug = format!("{cfg:?}");
    assert!(debug.contains(COMPONENT), "{debug}");
    for secret in [SECRET, MSG_TOKEN, AES_KEY] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

// ---- pushes -----------------------------------------------------------------------------------

/// What the receiver got: the query string and the body of each request.
type Received = Arc<Mutex<Vec<(String, Bytes)>>>;

/// A tiny event receiver on 127.0.0.1 that records every request and answers `status`
/// with `reply`, as the server's event endpoint would.
struct Receiver {
    url: String,
    got: Received,
    _server: actix_web::dev::ServerHandle,
}

impl Receiver {
    async fn start(status: u16, reply: &'static str) -> Receiver {
        let got: Received = Arc::default();
        let seen = got.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = HttpServer::new(move || {
            let seen = seen.clone();
            App::new().default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let query = req.query_string().to_owned();
                    seen.lock().expect("lock").push((query, body));
                    let status = StatusCode::from_u16(status).expect("a status");
                    HttpResponse::build(status).body(reply)
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Receiver {
            url: format!("http://{addr}/v1/platforms/saas/events"),
            got,
            _server: handle,
        }
    }

    fn count(&self) -> usize {
        self.got.lock().expect("lock").len()
    }

    /// Request `i`, checked and decrypted as the server would: the decrypted event.
    fn open(&self, i: usize) -> Event {
        let (query, body) = self.got.lock().expect("lock")[i].clone();
        let params = web::Query::<HashMap<String, String>>::from_query(&query)
            .expect("a query string")
            .into_inner();
        assert_eq!(params["encrypt_type"], "aes", "{query}");
        let (timestamp, nonce) = (&params["timestamp"], &params["nonce"]);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let sent: u64 = timestamp.parse().expect("a number");
        assert!(sent.abs_diff(now) < 60, "real time, not the fake clock");
        // The plain signature: sha1 over the sorted token, timestamp and nonce.
        let mut parts = [MSG_TOKEN, timestamp.as_str(), nonce.as_str()];
        parts.sort_unstable();
        assert_eq!(
            params["signature"],
            hex::encode(Sha1::digest(parts.concat().as_bytes()))
        );
        let envelope = Envelope {
            timestamp: timestamp.clone(),
            nonce: nonce.clone(),
            msg_signature: params["msg_signature"].clone(),
        };
        let crypto = MsgCrypto::new(MSG_TOKEN, AES_KEY, COMPONENT).expect("keys");
        let xml = crypto.open(&envelope, &body).expect("decrypts");
        let event = Event::parse(&xml).expect("event XML");
        assert_eq!(event.app_id, COMPONENT);
        event
    }
}

/// A fake whose platform pushes to `receiver`.
async fn pushing_to(receiver: &Receiver, tweak: impl FnOnce(&mut FakeConfig)) -> Wx {
    let wx = Wx::start(tweak).await;
    wx.fake
        .set_event_url(COMPONENT, Some(&receiver.url))
        .expect("a valid URL");
    wx
}

#[actix_web::test]
async fn a_ticket_push_reaches_the_receiver_encrypted_and_the_ticket_works() {
    let receiver = Receiver::start(200, "success").await;
    let wx = pushing_to(&receiver, |_| {}).await;
    let record = wx.fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert!(record.accepted(), "{record:?}");
    assert_eq!(record.info_type, "component_verify_ticket");
    assert_eq!(receiver.count(), 1);

    let EventKind::VerifyTicket { ticket } = receiver.open(0).kind else {
        panic!("not a ticket push");
    };
    let ticket = ticket.expose_secret().to_owned();
    assert_eq!(Some(&ticket), record.ticket.as_ref());
    assert_eq!(
        wx.fake.current_verify_ticket(COMPONENT),
        Some(ticket.clone())
    );
    assert_eq!(errcode(&wx.component_token_with(&ticket).await), 0);
    assert_eq!(wx.fake.pushes(), [record]);
}

#[actix_web::test]
async fn start_push_ticket_pushes_a_ticket_at_once() {
    let receiver = Receiver::start(200, "success").await;
    let wx = pushing_to(&receiver, |_| {}).await;
    let answer = wx
        .call(
            "api_start_push_ticket",
            "",
            json!({ "component_appid": COMPONENT, "component_secret": SECRET }),
        )
        .await;
    assert_wx_error(&answer, 0, "ok");
    assert!(eventually(Duration::from_secs(5), || async { receiver.count() == 1 }).await);
    assert!(matches!(
        receiver.open(0).kind,
        EventKind::VerifyTicket { .. }
    ));
    // A refused start pushes nothing: the fake spawns its push only after accepting the call,
    // so an error answer means no push was begun, and the counts can be read at once.
    let refused = wx
        .call(
            "api_start_push_ticket",
            "",
            json!({ "component_appid": COMPONENT, "component_secret": "nope" }),
        )
        .await;
    assert_ne!(errcode(&refused), 0, "{refused}");
    assert_eq!(wx.fake.pushes().len(), 1);
    assert_eq!(receiver.count(), 1);
}

#[actix_web::test]
async fn authorization_events_carry_a_code_that_query_auth_redeems() {
    let receiver = Receiver::start(200, "success").await;
    let wx = pushing_to(&receiver, |_| {}).await;
    let token = wx.component_token().await;

    let (authorized, record) = wx
        .fake
        .authorize_and_push(COMPONENT, SHOP, &[1, 15])
        .await
        .unwrap();
    assert!(record.accepted(), "{record:?}");
    assert_eq!(record.info_type, "authorized");
    let EventKind::Authorized(a) = receiver.open(0).kind else {
        panic!("not an authorized push");
    };
    assert_eq!(a.authorizer_appid, SHOP);
    assert_eq!(a.code_expires_at, authorized.code_expires_at);
    let code = a.authorization_code.expose_secret().to_owned();
    assert_eq!(code, authorized.authorization_code);
    let info = wx.query_auth(&token, &code).await;
    assert_eq!(
        info["authorization_info"]["authorizer_appid"], SHOP,
        "{info}"
    );

    let (status, again) = wx
        .control(
            "/_fake/component/authorize",
            json!({ "component_appid": COMPONENT, "authorizer_appid": SHOP, "push": true }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again["push"]["status"], 200, "{again}");
    assert_eq!(again["push"]["info_type"], "updateauthorized");
    let EventKind::UpdateAuthorized(u) = receiver.open(1).kind else {
        panic!("not an updateauthorized push");
    };
    assert_eq!(
        u.authorization_code.expose_secret(),
        again["authorization_code"].as_str().unwrap()
    );

    let left = wx.fake.unauthorize_and_push(COMPONENT, SHOP).await.unwrap();
    assert!(left.accepted());
    let EventKind::Unauthorized { authorizer_appid } = receiver.open(2).kind else {
        panic!("not an unauthorized push");
    };
    assert_eq!(authorizer_appid, SHOP);
    assert_eq!(wx.list(&token, 0, 10).await["total_count"], 0);
}

#[actix_web::test]
async fn tickets_are_pushed_at_the_configured_interval_until_it_is_set_to_zero() {
    let receiver = Receiver::start(200, "success").await;
    let wx = Wx::start(|c| {
        c.platforms[0].event_url = Some(receiver.url.clone());
        c.ticket_push_interval = Duration::from_millis(100);
    })
    .await;
    assert!(eventually(Duration::from_secs(5), || async { receiver.count() >= 2 }).await);
    // The other platform has no event URL: only this one gets tickets.
    assert!(wx
        .fake
        .pushes()
        .iter()
        .all(|p| p.component_appid == COMPONENT));

    let (status, _) = wx
        .control("/_fake/component/ticket_interval", json!({ "secs": 0 }))
        .await;
    assert_eq!(status, 204);
    // One push may have been on its way when the interval changed.
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    let after = receiver.count();
    // A bounded wait: the claim is that no timed push comes, and a push that does not come
    // leaves no counter; 400 ms is four periods of the 100 ms interval used before.
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), after, "no timed pushes at interval 0");

    wx.fake.set_ticket_push_interval(Duration::from_millis(100));
    assert!(
        eventually(Duration::from_secs(5), || async {
            receiver.count() > after
        })
        .await
    );
    let newest = receiver.open(receiver.count() - 1);
    assert!(matches!(newest.kind, EventKind::VerifyTicket { .. }));
}

#[actix_web::test]
async fn refused_and_unanswered_pushes_are_recorded() {
    let refusing = Receiver::start(500, "nope").await;
    let wx = pushing_to(&refusing, |_| {}).await;
    let refused = wx.fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(refused.status, Some(500));
    assert_eq!(refused.body, "nope");
    assert!(!refused.accepted());

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/events", closed.local_addr().unwrap());
    drop(closed);
    wx.fake.set_event_url(COMPONENT, Some(&url)).unwrap();
    let unanswered = wx.fake.push_verify_ticket(COMPONENT).await.unwrap();
    assert_eq!(unanswered.status, None);
    assert!(unanswered.error.is_some(), "{unanswered:?}");

    let pushes = wx.get_json("/_fake/component/pushes").await;
    let pushes = pushes["pushes"].as_array().unwrap();
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0]["status"], 500);
    assert_eq!(pushes[1]["status"], Value::Null);

    wx.fake.set_event_url(COMPONENT, None).unwrap();
    assert_eq!(
        wx.fake.push_verify_ticket(COMPONENT).await,
        Err(ControlError::NoEventUrl(COMPONENT.into()))
    );
    assert!(wx.fake.set_event_url(COMPONENT, Some("not a url")).is_err());
}

/// Web OAuth on behalf of an authorized account: the component token in place of an AppSecret,
/// the code used once, and WeChat's errcodes for what is wrong.
#[actix_web::test]
async fn component_web_oauth_takes_the_component_token_and_a_code_once() {
    let wx = Wx::start(|_| {}).await;
    let token = wx.component_token().await;
    let get = |query: String| {
        let url = wx.url(&format!("/sns/oauth2/component/access_token?{query}"));
        let client = wx.client.clone();
        async move {
            let mut res = client.get(url).send().await.expect("answered");
            assert_eq!(res.status().as_u16(), 200);
            serde_json::from_slice::<Value>(&res.body().await.expect("body")).expect("JSON")
        }
    };
    let query = |code: &str, component: &str, token: &str| {
        format!(
            "appid={SHOP}&code={code}&grant_type=authorization_code\
             &component_appid={component}&component_access_token={token}"
        )
    };
    let login = get(query("code-1", COMPONENT, &token)).await;
    assert_eq!(login["scope"], "snsapi_base", "{login}");
    assert!(str_field(&login, "openid").len() > 10);
    assert!(str_field(&login, "access_token").len() > 10);
    assert_eq!(
        errcode(&get(query("code-1", COMPONENT, &token)).await),
        40029
    );
    assert_eq!(
        errcode(&get(query("code-2", COMPONENT, "forged")).await),
        40001
    );
    assert_eq!(
        errcode(&get(query("code-2", OTHER_COMPONENT, &token)).await),
        61011,
        "another platform's appid"
    );
    let no_grant = get(query("code-2", COMPONENT, &token).replace("grant_type", "x")).await;
    assert_eq!(errcode(&no_grant), 40002);
    assert_eq!(
        errcode(&get(query("code-2", COMPONENT, &token).replace(SHOP, "")).await),
        41002
    );
}

/// The fake's checks of reported tokens (`reported.rs`): each kind of token is alive to its
/// own probe, getApiQuota takes a token only for its own kind of API, and `kill_token` kills
/// any kind without minting.
#[actix_web::test]
async fn the_probes_tell_each_kind_of_token_alive_or_dead_and_any_can_be_killed() {
    const APP: &str = "wx00000000000a0001";
    const CORP: &str = "ww00000000000c0001";
    let wx = Wx::start(|cfg| {
        cfg.apps = vec![(APP.into(), "app-secret".into())];
        cfg.wecom_apps = vec![(CORP.into(), "corp-secret".into())];
    })
    .await;
    let get = |path: String| {
        let wx = &wx;
        async move {
            let mut res = wx.client.get(wx.url(&path)).send().await.expect("answered");
            serde_json::from_slice::<Value>(&res.body().await.unwrap()).expect("JSON")
        }
    };
    let errcode = |v: &Value| v["errcode"].as_i64().unwrap_or(0);
    let probe = |token: String| get(format!("/cgi-bin/get_api_domain_ip?access_token={token}"));
    let quota = |token: &str, cgi_path: &str| {
        wx.client
            .post(wx.url(&format!("/cgi-bin/openapi/quota/get?access_token={token}")))
            .send_json(&json!({ "cgi_path": cgi_path }))
    };
    let quota = |token: String, cgi_path: &'static str| {
        let sent = quota(&token, cgi_path);
        async move {
            let mut res = sent.await.expect("answered");
            serde_json::from_slice::<Value>(&res.body().await.unwrap()).expect("JSON")
        }
    };
    const COMPONENT_API: &str = "/cgi-bin/component/api_component_token";
    const ACCOUNT_API: &str = "/cgi-bin/message/custom/send";

    let app = str_field(
        &get(format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret=app-secret"
        ))
        .await,
        "access_token",
    );
    let corp = str_field(
        &get(format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret=corp-secret"
        ))
        .await,
        "access_token",
    );
    let component = wx.component_token().await;
    let code = wx
        .fake
        .authorize(COMPONENT, SHOP, &[1], None)
        .expect("authorized")
        .authorization_code;
    let auth = wx.query_auth(&component, &code).await;
    let authorizer = str_field(&auth["authorization_info"], "authorizer_access_token");

    let probes = wx.fake.calls(Endpoint::Probe);
    for t in [&app, &corp, &authorizer] {
        assert_eq!(errcode(&probe(t.clone()).await), 0, "alive");
    }
    let ok = quota(component.clone(), COMPONENT_API).await;
    assert_eq!(errcode(&ok), 0, "{ok}");
    assert!(ok["quota"]["daily_limit"].as_u64().is_some(), "{ok}");
    assert_eq!(errcode(&quota(app.clone(), ACCOUNT_API).await), 0);
    // A token of the other kind for the API: WeChat's 76022.
    assert_eq!(errcode(&quota(app.clone(), COMPONENT_API).await), 76022);
    assert_eq!(errcode(&quota(component.clone(), ACCOUNT_API).await), 76022);
    assert_eq!(wx.fake.quota_get_calls(), 4);
    assert_eq!(
        wx.fake.calls(Endpoint::Probe),
        probes + 7,
        "both probes counted"
    );

    // Killed behind wxtoken's back: dead to the probes, nothing minted.
    let minted = wx.fake.minted(APP);
    for t in [&app, &corp, &component, &authorizer] {
        assert!(wx.fake.kill_token(t));
        assert_ne!(wx.fake.validity(t), Validity::Valid);
    }
    assert!(!wx.fake.kill_token("never-minted"));
    assert_eq!(wx.fake.minted(APP), minted);
    assert_eq!(errcode(&probe(app.clone()).await), 40001);
    assert_eq!(errcode(&probe(corp.clone()).await), 40014, "WeCom's word");
    assert_eq!(errcode(&probe(authorizer.clone()).await), 40001);
    assert_eq!(
        errcode(&quota(component.clone(), COMPONENT_API).await),
        40001
    );
    // The next gettoken mints a new WeCom token: the old one is dead.
    let again = str_field(
        &get(format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret=corp-secret"
        ))
        .await,
        "access_token",
    );
    assert_ne!(again, corp);
    assert_eq!(wx.fake.wecom_minted(CORP, "corp-secret"), 2);

    // The path that rejects even a valid token, as WeChat does a token in the wrong parameter.
    let fresh = wx.component_token().await;
    for param in ["access_token", "component_access_token"] {
        let v = get(format!("/cgi-bin/fake/reject_token?{param}={fresh}")).await;
        assert_eq!(errcode(&v), 40001, "{v}");
    }
    assert_eq!(
        errcode(&get("/cgi-bin/fake/reject_token".into()).await),
        41001
    );
    assert_eq!(wx.fake.reject_token_calls(), 3);
    assert_eq!(wx.fake.validity(&fresh), Validity::Valid);

    // The control over HTTP.
    let kill = |token: &str| {
        wx.client
            .post(wx.url("/_fake/kill_token"))
            .send_json(&json!({ "token": token }))
    };
    assert_eq!(kill(&fresh).await.unwrap().status().as_u16(), 204);
    assert_ne!(wx.fake.validity(&fresh), Validity::Valid);
    assert_eq!(kill("never-minted").await.unwrap().status().as_u16(), 404);
}

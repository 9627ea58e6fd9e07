//! The fake WeChat (`wxtoken::fake`) over real HTTP(S) with a real awc client: minting, overlap
//! and expiry, every errcode, quotas, the stable token's modes, JS-SDK tickets, WeCom tokens,
//! faults, control endpoints, TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::helpers::test_pki;
use actix_web::error::ParseError;
use awc::error::{ConnectError, SendRequestError};
use awc::Client;
use serde_json::{json, Value};
use wxtoken::fake::{Endpoint, FakeConfig, FakeTls, FakeWechat, Fault, Validity};

const APP: &str = "wx1234567890abcdef";
const SECRET: &str = "the-app-secret";
const OTHER_APP: &str = "wxfedcba0987654321";
const OTHER_SECRET: &str = "the-other-secret";
/// A WeCom corp with two apps (two secrets), and a second corp with one.
const CORP: &str = "ww1234567890abcdef";
const CORP_SECRET_A: &str = "corp-app-a-secret";
const CORP_SECRET_B: &str = "corp-app-b-secret";
const OTHER_CORP: &str = "wwfedcba0987654321";
const OTHER_CORP_SECRET: &str = "other-corp-secret";

fn config() -> FakeConfig {
    FakeConfig {
        apps: vec![
            (APP.into(), SECRET.into()),
            (OTHER_APP.into(), OTHER_SECRET.into()),
        ],
        wecom_apps: vec![
            (CORP.into(), CORP_SECRET_A.into()),
            (CORP.into(), CORP_SECRET_B.into()),
            (OTHER_CORP.into(), OTHER_CORP_SECRET.into()),
        ],
        ..FakeConfig::default()
    }
}

/// A started fake and a client for it.
struct Wx {
    fake: FakeWechat,
    client: Client,
}

impl Wx {
    async fn start(tweak: impl FnOnce(&mut FakeConfig)) -> Wx {
        let mut cfg = config();
        tweak(&mut cfg);
        let fake = FakeWechat::start(cfg).await.expect("fake starts");
        Wx {
            fake,
            client: Client::default(),
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.fake.base_url())
    }

    /// GET, returning the status and the raw body.
    async fn get_raw(&self, path_and_query: &str) -> (u16, String) {
        let mut res = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("request answered");
        let body = res.body().await.expect("body read");
        (
            res.status().as_u16(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    }

    /// GET a WeChat endpoint: HTTP 200 and a JSON body.
    async fn get_json(&self, path_and_query: &str) -> Value {
        let (status, body) = self.get_raw(path_and_query).await;
        assert_eq!(status, 200, "body: {body}");
        serde_json::from_str(&body).expect("JSON body")
    }

    async fn token_query(&self, query: &str) -> Value {
        self.get_json(&format!("/cgi-bin/token?{query}")).await
    }

    /// `/cgi-bin/token` with valid credentials.
    async fn token(&self) -> Value {
        self.token_query(&format!(
            "grant_type=client_credential&appid={APP}&secret={SECRET}"
        ))
        .await
    }

    async fn stable_raw(&self, body: &str) -> Value {
        let mut res = self
            .client
            .post(self.url("/cgi-bin/stable_token"))
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_owned())
            .await
            .expect("request answered");
        assert_eq!(res.status().as_u16(), 200);
        serde_json::from_slice(&res.body().await.expect("body read")).expect("JSON body")
    }

    /// `/cgi-bin/stable_token` with valid credentials.
    async fn stable(&self, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": APP,
            "secret": SECRET,
            "force_refresh": force_refresh,
        });
        self.stable_raw(&body.to_string()).await
    }

    async fn probe(&self, token: &str) -> Value {
        self.get_json(&format!("/cgi-bin/get_api_domain_ip?access_token={token}"))
            .await
    }

    /// `/cgi-bin/ticket/getticket` with that token and type.
    async fn ticket(&self, token: &str, kind: &str) -> Value {
        self.get_json(&format!(
            "/cgi-bin/ticket/getticket?access_token={token}&type={kind}"
        ))
        .await
    }

    /// WeCom's `/cgi-bin/gettoken` for that app.
    async fn wecom(&self, corpid: &str, secret: &str) -> Value {
        self.get_json(&format!(
            "/cgi-bin/gettoken?corpid={corpid}&corpsecret={secret}"
        ))
        .await
    }

    async fn control(&self, path: &str, body: Value) -> u16 {
        let res = self
            .client
            .post(self.url(path))
            .send_json(&body)
            .await
            .expect("control request answered");
        res.status().as_u16()
    }
}

fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

fn errmsg(v: &Value) -> &str {
    v.get("errmsg").and_then(Value::as_str).unwrap_or("")
}

/// The token of a success body; fails the test on an error body.
fn token_of(v: &Value) -> String {
    assert_eq!(errcode(v), 0, "expected a token, got {v}");
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_owned()
}

fn expires_in(v: &Value) -> u64 {
    v["expires_in"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_in in {v}"))
}

fn assert_probe_valid(v: &Value) {
    assert_eq!(v, &json!({ "ip_list": ["127.0.0.1"] }));
}

/// WeCom's success bodies carry `"errcode":0,"errmsg":"ok"`.
fn assert_wecom_probe_valid(v: &Value) {
    assert_eq!(
        v,
        &json!({ "errcode": 0, "errmsg": "ok", "ip_list": ["127.0.0.1"] })
    );
}

/// The ticket of a getticket success body (and its full shape); fails the test otherwise.
fn ticket_of(v: &Value) -> String {
    let ticket = v["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a ticket, got {v}"))
        .to_owned();
    assert_eq!(
        v,
        &json!({ "errcode": 0, "errmsg": "ok", "ticket": ticket, "expires_in": v["expires_in"] })
    );
    ticket
}

fn assert_wx_error(v: &Value, code: i64, msg: &str) {
    assert_eq!(v, &json!({ "errcode": code, "errmsg": msg }));
}

const NOT_LATEST: &str = "invalid credential, access_token is invalid or not latest";

// ---- /cgi-bin/token -------------------------------------------------------------------------

#[actix_web::test]
async fn token_mints_a_new_url_safe_token_on_every_call() {
    let wx = Wx::start(|_| {}).await;

    let first = wx.token().await;
    let second = wx.token().await;

    let (a, b) = (token_of(&first), token_of(&second));
    assert_ne!(a, b);
    for t in [&a, &b] {
        assert_eq!(t.len(), 64);
        assert!(t
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    }
    assert_eq!(expires_in(&first), 7200);
    assert_eq!(first.as_object().map(|o| o.len()), Some(2), "{first}");
    assert_eq!(wx.fake.minted(APP), 2);
    assert_eq!(wx.fake.minted(OTHER_APP), 0);
    assert_eq!(wx.fake.calls(Endpoint::Token), 2);
    assert_eq!(wx.fake.current_token(APP), Some(b));
}

#[actix_web::test]
async fn token_len_is_configurable() {
    let wx = Wx::start(|c| c.token_len = 300).await;
    assert_eq!(token_of(&wx.token().await).len(), 300);
}

#[actix_web::test]
async fn replaced_token_works_during_the_overlap_and_older_ones_die_at_once() {
    let wx = Wx::start(|c| c.overlap_secs = 1).await;

    let a = token_of(&wx.token().await);
    let b = token_of(&wx.token().await);
    assert_probe_valid(&wx.probe(&a).await);

    let c = token_of(&wx.token().await);
    // a is two generations old: dead at once, although its overlap had not run out.
    assert_wx_error(&wx.probe(&a).await, 40001, NOT_LATEST);
    assert_eq!(wx.fake.validity(&a), Validity::Replaced);
    assert_probe_valid(&wx.probe(&b).await);

    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_wx_error(&wx.probe(&b).await, 40001, NOT_LATEST);
    assert_eq!(wx.fake.validity(&b), Validity::Replaced);
    assert_probe_valid(&wx.probe(&c).await);
    assert_eq!(wx.fake.validity(&c), Validity::Valid);
}

#[actix_web::test]
async fn expired_token_answers_42001() {
    let wx = Wx::start(|c| c.expires_in = 1).await;

    let answer = wx.token().await;
    assert_eq!(expires_in(&answer), 1);
    let t = token_of(&answer);
    assert_probe_valid(&wx.probe(&t).await);

    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_wx_error(&wx.probe(&t).await, 42001, "access_token expired");
    assert_eq!(wx.fake.validity(&t), Validity::Expired);
}

#[actix_web::test]
async fn set_expires_in_applies_to_tokens_minted_afterwards() {
    let wx = Wx::start(|_| {}).await;
    let long = token_of(&wx.token().await);

    wx.fake.set_expires_in(60);
    assert_eq!(expires_in(&wx.token().await), 60);

    // The earlier token keeps its 7200 s: after 100 s it is past a 60 s life but still
    // inside the 300 s overlap.
    wx.fake.advance_clock(Duration::from_secs(100));
    assert_eq!(wx.fake.validity(&long), Validity::Valid);
}

#[actix_web::test]
async fn token_errcodes_for_bad_requests() {
    let wx = Wx::start(|_| {}).await;

    let cases: [(String, i64, &str); 7] = [
        (
            format!("appid={APP}&secret={SECRET}"),
            40002,
            "invalid grant_type",
        ),
        (
            format!("grant_type=authorization_code&appid={APP}&secret={SECRET}"),
            40002,
            "invalid grant_type",
        ),
        (
            format!("grant_type=client_credential&appid=wxnobody&secret={SECRET}"),
            40013,
            "invalid appid",
        ),
        (
            format!("grant_type=client_credential&appid={APP}&secret=wrong"),
            40125,
            "invalid appsecret",
        ),
        // A valid secret of another app is still the wrong secret.
        (
            format!("grant_type=client_credential&appid={APP}&secret={OTHER_SECRET}"),
            40125,
            "invalid appsecret",
        ),
        (
            format!("grant_type=client_credential&secret={SECRET}"),
            41002,
            "appid missing",
        ),
        (
            format!("grant_type=client_credential&appid={APP}&secret="),
            41004,
            "appsecret missing",
        ),
    ];
    for (query, code, msg) in cases {
        assert_wx_error(&wx.token_query(&query).await, code, msg);
    }
    assert_eq!(wx.fake.minted(APP), 0);
    assert_eq!(wx.fake.current_token(APP), None);
    assert_eq!(wx.fake.calls(Endpoint::Token), 7);
}

#[actix_web::test]
async fn wrong_methods_get_wechats_method_errcodes() {
    let wx = Wx::start(|_| {}).await;

    let mut res = wx
        .client
        .post(wx.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
        )))
        .send()
        .await
        .expect("answered");
    let body: Value = serde_json::from_slice(&res.body().await.expect("body")).expect("JSON");
    assert_wx_error(&body, 43001, "require GET method");

    let body = wx.get_json("/cgi-bin/stable_token").await;
    assert_wx_error(&body, 43002, "require POST method");
    assert_eq!(wx.fake.minted(APP), 0);
}

#[actix_web::test]
async fn daily_quota_runs_out_with_45009_and_resets_the_next_day() {
    let wx = Wx::start(|c| c.daily_quota = 2).await;

    // Calls rejected for bad credentials do not use quota.
    let wrong = format!("grant_type=client_credential&appid={APP}&secret=wrong");
    assert_eq!(errcode(&wx.token_query(&wrong).await), 40125);

    token_of(&wx.token().await);
    let last = token_of(&wx.token().await);
    assert_wx_error(&wx.token().await, 45009, "reach max api daily quota limit");
    assert_eq!(wx.fake.minted(APP), 2);
    assert_eq!(wx.fake.current_token(APP), Some(last));

    // The quota is per appid, and the stable token has limits of its own.
    let other = format!("grant_type=client_credential&appid={OTHER_APP}&secret={OTHER_SECRET}");
    token_of(&wx.token_query(&other).await);
    token_of(&wx.stable(false).await);

    wx.fake.advance_clock(Duration::from_secs(24 * 3600));
    token_of(&wx.token().await);
}

// ---- the probe ------------------------------------------------------------------------------

#[actix_web::test]
async fn probe_errcodes() {
    let wx = Wx::start(|_| {}).await;

    assert_wx_error(
        &wx.get_json("/cgi-bin/get_api_domain_ip").await,
        41001,
        "access_token missing",
    );
    assert_wx_error(
        &wx.get_json("/cgi-bin/get_api_domain_ip?access_token=")
            .await,
        41001,
        "access_token missing",
    );
    assert_wx_error(&wx.probe("never-minted-here").await, 40001, NOT_LATEST);
    assert_eq!(wx.fake.validity("never-minted-here"), Validity::Unknown);
    assert_eq!(wx.fake.calls(Endpoint::Probe), 3);
    assert_eq!(wx.fake.calls(Endpoint::Token), 0);
}

// ---- /cgi-bin/stable_token ------------------------------------------------------------------

#[actix_web::test]
async fn stable_token_is_reused_and_separate_from_cgi_bin_token() {
    let wx = Wx::start(|_| {}).await;

    let first = wx.stable(false).await;
    let s = token_of(&first);
    assert_eq!(expires_in(&first), 7200);

    let plain = token_of(&wx.token().await);
    assert_ne!(plain, s);

    let again = wx.stable(false).await;
    assert_eq!(token_of(&again), s);
    assert!((7198..=7200).contains(&expires_in(&again)), "{again}");
    assert_probe_valid(&wx.probe(&s).await);
    assert_probe_valid(&wx.probe(&plain).await);
    assert_eq!(wx.fake.current_stable_token(APP), Some(s));
    assert_eq!(wx.fake.minted(APP), 2);
    assert_eq!(wx.fake.fetched(APP), 3);
    assert_eq!(wx.fake.calls(Endpoint::StableToken), 2);
}

#[actix_web::test]
async fn stable_token_rotates_in_its_last_300_seconds() {
    let wx = Wx::start(|_| {}).await;
    let a = token_of(&wx.stable(false).await);

    wx.fake.advance_clock(Duration::from_secs(6890));
    let still = wx.stable(false).await;
    assert_eq!(token_of(&still), a);
    assert!((300..=310).contains(&expires_in(&still)), "{still}");

    wx.fake.advance_clock(Duration::from_secs(20));
    let rotated = wx.stable(false).await;
    let b = token_of(&rotated);
    assert_ne!(b, a);
    assert_eq!(expires_in(&rotated), 7200);
    // The rotated-out token lives on until its own expiry.
    assert_probe_valid(&wx.probe(&a).await);

    wx.fake.advance_clock(Duration::from_secs(291));
    assert_wx_error(&wx.probe(&a).await, 42001, "access_token expired");
    assert_probe_valid(&wx.probe(&b).await);
    assert_eq!(token_of(&wx.stable(false).await), b);
}

#[actix_web::test]
async fn stable_rotation_window_is_half_a_short_lifetime() {
    let wx = Wx::start(|c| c.expires_in = 4).await;
    let a = token_of(&wx.stable(false).await);

    wx.fake.advance_clock(Duration::from_millis(1000));
    let still = wx.stable(false).await;
    assert_eq!(token_of(&still), a);
    assert_eq!(expires_in(&still), 2);

    wx.fake.advance_clock(Duration::from_millis(1500));
    let b = token_of(&wx.stable(false).await);
    assert_ne!(b, a);
    assert_eq!(wx.fake.validity(&a), Validity::Valid);

    wx.fake.advance_clock(Duration::from_millis(1600));
    assert_eq!(wx.fake.validity(&a), Validity::Expired);
    assert_eq!(wx.fake.validity(&b), Validity::Valid);
}

#[actix_web::test]
async fn force_refresh_kills_the_old_token_and_is_rate_limited() {
    let wx = Wx::start(|_| {}).await;
    let a = token_of(&wx.stable(false).await);

    let b = token_of(&wx.stable(true).await);
    assert_ne!(b, a);
    assert_wx_error(&wx.probe(&a).await, 40001, NOT_LATEST);
    assert_eq!(wx.fake.validity(&a), Validity::Replaced);

    // A second force within 30 s is refused, and changes nothing.
    wx.fake.advance_clock(Duration::from_secs(29));
    assert_wx_error(
        &wx.stable(true).await,
        45011,
        "api minute-quota reach limit",
    );
    assert_eq!(token_of(&wx.stable(false).await), b);

    wx.fake.advance_clock(Duration::from_secs(1));
    let c = token_of(&wx.stable(true).await);
    assert_ne!(c, b);
    assert_eq!(wx.fake.validity(&b), Validity::Replaced);

    // 20 forced refreshes per day: two done, 18 more allowed, the 21st refused.
    for _ in 0..18 {
        wx.fake.advance_clock(Duration::from_secs(31));
        token_of(&wx.stable(true).await);
    }
    wx.fake.advance_clock(Duration::from_secs(31));
    assert_eq!(errcode(&wx.stable(true).await), 45011);

    wx.fake.advance_clock(Duration::from_secs(24 * 3600));
    token_of(&wx.stable(true).await);
}

#[actix_web::test]
async fn stable_token_errcodes_for_bad_requests() {
    let wx = Wx::start(|_| {}).await;

    for body in [
        "{not json",
        "[1, 2]",
        "",
        r#"{"grant_type":"client_credential","appid":"x","secret":"y","force_refresh":"yes"}"#,
    ] {
        assert_wx_error(&wx.stable_raw(body).await, 47001, "data format error");
    }
    let cases = [
        (json!({ "appid": APP, "secret": SECRET }), 40002),
        (
            json!({ "grant_type": "password", "appid": APP, "secret": SECRET }),
            40002,
        ),
        (
            json!({ "grant_type": "client_credential", "appid": "wxnobody", "secret": SECRET }),
            40013,
        ),
        (
            json!({ "grant_type": "client_credential", "appid": APP, "secret": "wrong" }),
            40125,
        ),
        (
            json!({ "grant_type": "client_credential", "secret": SECRET }),
            41002,
        ),
    ];
    for (body, code) in cases {
        assert_eq!(
            errcode(&wx.stable_raw(&body.to_string()).await),
            code,
            "{body}"
        );
    }
    // force_refresh may be left out: normal mode.
    let body = json!({ "grant_type": "client_credential", "appid": APP, "secret": SECRET });
    token_of(&wx.stable_raw(&body.to_string()).await);
    assert_eq!(wx.fake.minted(APP), 1);
}

// ---- /cgi-bin/ticket/getticket --------------------------------------------------------------

#[actix_web::test]
async fn getticket_mints_per_call_and_the_previous_ticket_overlaps() {
    let wx = Wx::start(|c| c.overlap_secs = 10).await;
    let t = token_of(&wx.token().await);

    let first = wx.ticket(&t, "jsapi").await;
    let a = ticket_of(&first);
    assert_eq!(expires_in(&first), 7200);
    assert_eq!(a.len(), 86);
    assert!(a
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-'));
    let b = ticket_of(&wx.ticket(&t, "jsapi").await);
    assert_ne!(a, b);
    assert_eq!(wx.fake.ticket_validity(&a), Validity::Valid);

    let c = ticket_of(&wx.ticket(&t, "jsapi").await);
    // a is two generations old: dead at once; b lives for the overlap.
    assert_eq!(wx.fake.ticket_validity(&a), Validity::Replaced);
    assert_eq!(wx.fake.ticket_validity(&b), Validity::Valid);
    wx.fake.advance_clock(Duration::from_secs(10));
    assert_eq!(wx.fake.ticket_validity(&b), Validity::Replaced);
    assert_eq!(wx.fake.ticket_validity(&c), Validity::Valid);
    assert_eq!(wx.fake.current_ticket(APP, "jsapi"), Some(c.clone()));

    // wx_card tickets are a separate sequence: minting one leaves the jsapi ticket alone.
    let d = ticket_of(&wx.ticket(&t, "wx_card").await);
    let e = ticket_of(&wx.ticket(&t, "wx_card").await);
    assert_ne!(d, c);
    assert_eq!(wx.fake.ticket_validity(&c), Validity::Valid);
    assert_eq!(wx.fake.ticket_validity(&d), Validity::Valid);
    assert_eq!(wx.fake.current_ticket(APP, "wx_card"), Some(e));
    assert_eq!(wx.fake.current_ticket(APP, "jsapi"), Some(c.clone()));
    assert_eq!(wx.fake.current_ticket(APP, "bogus"), None);
    assert_eq!(wx.fake.current_ticket(OTHER_APP, "jsapi"), None);

    assert_eq!(wx.fake.tickets_minted(APP), 5);
    assert_eq!(wx.fake.tickets_minted(OTHER_APP), 0);
    assert_eq!(wx.fake.calls(Endpoint::Ticket), 5);
    // Tickets are not tokens: no token was minted for them, and the probe refuses one.
    assert_eq!(wx.fake.minted(APP), 1);
    assert_wx_error(&wx.probe(&c).await, 40001, NOT_LATEST);
    assert_eq!(wx.fake.validity(&c), Validity::Unknown);
    assert_eq!(wx.fake.ticket_validity(&t), Validity::Unknown);
}

#[actix_web::test]
async fn tickets_are_per_appid_and_outlive_the_token_they_were_fetched_with() {
    let wx = Wx::start(|_| {}).await;
    let t = token_of(&wx.token().await);
    let mine = ticket_of(&wx.ticket(&t, "jsapi").await);

    // Two more tokens: t is two generations old and dead, its ticket is not.
    token_of(&wx.token().await);
    token_of(&wx.token().await);
    assert_eq!(wx.fake.validity(&t), Validity::Replaced);
    assert_eq!(wx.fake.ticket_validity(&mine), Validity::Valid);

    // A stable token works too, and another app's tickets do not touch this app's.
    let other = format!("grant_type=client_credential&appid={OTHER_APP}&secret={OTHER_SECRET}");
    let other_token = token_of(&wx.token_query(&other).await);
    let s = token_of(&wx.stable(false).await);
    for _ in 0..2 {
        ticket_of(&wx.ticket(&other_token, "jsapi").await);
    }
    assert_eq!(wx.fake.ticket_validity(&mine), Validity::Valid);
    assert_eq!(wx.fake.tickets_minted(OTHER_APP), 2);
    let next = ticket_of(&wx.ticket(&s, "jsapi").await);
    assert_eq!(wx.fake.current_ticket(APP, "jsapi"), Some(next));
    assert_eq!(wx.fake.tickets_minted(APP), 2);
}

#[actix_web::test]
async fn ticket_lifetime_follows_expires_in() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.set_expires_in(60);
    let t = token_of(&wx.token().await);
    let answer = wx.ticket(&t, "jsapi").await;
    assert_eq!(expires_in(&answer), 60);
    let ticket = ticket_of(&answer);

    wx.fake.advance_clock(Duration::from_secs(59));
    assert_eq!(wx.fake.ticket_validity(&ticket), Validity::Valid);
    wx.fake.advance_clock(Duration::from_secs(1));
    assert_eq!(wx.fake.ticket_validity(&ticket), Validity::Expired);
}

#[actix_web::test]
async fn getticket_errcodes() {
    let wx = Wx::start(|_| {}).await;
    let replaced = token_of(&wx.token().await);
    token_of(&wx.token().await);
    let t = token_of(&wx.token().await);
    let wecom = token_of(&wx.wecom(CORP, CORP_SECRET_A).await);

    let cases: [(String, i64, &str); 9] = [
        ("type=jsapi".to_owned(), 41001, "access_token missing"),
        (
            "access_token=&type=jsapi".to_owned(),
            41001,
            "access_token missing",
        ),
        // The token is checked before the type.
        ("type=bogus".to_owned(), 41001, "access_token missing"),
        (
            "access_token=never-minted-here&type=jsapi".to_owned(),
            40001,
            NOT_LATEST,
        ),
        (
            format!("access_token={replaced}&type=jsapi"),
            40001,
            NOT_LATEST,
        ),
        // WeChat does not know WeCom's tokens.
        (
            format!("access_token={wecom}&type=jsapi"),
            40001,
            NOT_LATEST,
        ),
        (format!("access_token={t}"), 40097, "invalid args"),
        (format!("access_token={t}&type="), 40097, "invalid args"),
        (
            format!("access_token={t}&type=JSAPI"),
            40097,
            "invalid args",
        ),
    ];
    for (query, code, msg) in cases {
        let body = wx
            .get_json(&format!("/cgi-bin/ticket/getticket?{query}"))
            .await;
        assert_eq!(
            body,
            json!({ "errcode": code, "errmsg": msg }),
            "query: {query}"
        );
    }

    // The same token works until it expires, then answers 42001.
    ticket_of(&wx.ticket(&t, "jsapi").await);
    wx.fake.advance_clock(Duration::from_secs(7200));
    assert_wx_error(&wx.ticket(&t, "jsapi").await, 42001, "access_token expired");

    let mut res = wx
        .client
        .post(wx.url(&format!(
            "/cgi-bin/ticket/getticket?access_token={t}&type=jsapi"
        )))
        .send()
        .await
        .expect("answered");
    let body: Value = serde_json::from_slice(&res.body().await.expect("body")).expect("JSON");
    assert_wx_error(&body, 43001, "require GET method");

    assert_eq!(wx.fake.tickets_minted(APP), 1);
    assert_eq!(wx.fake.calls(Endpoint::Ticket), 12);
}

// ---- WeCom /cgi-bin/gettoken ----------------------------------------------------------------

#[actix_web::test]
async fn wecom_token_is_per_app_and_the_same_while_it_lives() {
    let wx = Wx::start(|_| {}).await;

    let first = wx.wecom(CORP, CORP_SECRET_A).await;
    let a = token_of(&first);
    assert_eq!(
        first,
        json!({ "errcode": 0, "errmsg": "ok", "access_token": a, "expires_in": 7200 })
    );
    // Two apps of one corp: two secrets, two tokens.
    let b = token_of(&wx.wecom(CORP, CORP_SECRET_B).await);
    assert_ne!(a, b);

    wx.fake.advance_clock(Duration::from_secs(100));
    let again = wx.wecom(CORP, CORP_SECRET_A).await;
    assert_eq!(token_of(&again), a);
    // What is left of its life, not a fresh 7200 s.
    assert!((7099..=7100).contains(&expires_in(&again)), "{again}");

    assert_wecom_probe_valid(&wx.probe(&a).await);
    assert_wecom_probe_valid(&wx.probe(&b).await);
    assert_eq!(wx.fake.validity(&a), Validity::Valid);
    assert_eq!(wx.fake.current_wecom_token(CORP, CORP_SECRET_A), Some(a));
    assert_eq!(wx.fake.current_wecom_token(CORP, CORP_SECRET_B), Some(b));
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_A), 1);
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_B), 1);
    assert_eq!(wx.fake.wecom_minted(OTHER_CORP, OTHER_CORP_SECRET), 0);
    assert_eq!(wx.fake.wecom_minted(CORP, "wrong"), 0);
    assert_eq!(wx.fake.calls(Endpoint::WecomToken), 3);
    // WeCom has nothing to do with the WeChat apps.
    assert_eq!(wx.fake.calls(Endpoint::Token), 0);
    assert_eq!(wx.fake.minted(APP), 0);
}

#[actix_web::test]
async fn wecom_token_is_renewed_only_after_it_expires() {
    let wx = Wx::start(|c| c.expires_in = 100).await;
    let a = token_of(&wx.wecom(CORP, CORP_SECRET_A).await);

    wx.fake.advance_clock(Duration::from_secs(99));
    let late = wx.wecom(CORP, CORP_SECRET_A).await;
    assert_eq!(token_of(&late), a);
    assert!(expires_in(&late) <= 1, "{late}");

    wx.fake.advance_clock(Duration::from_secs(1));
    assert_eq!(wx.fake.current_wecom_token(CORP, CORP_SECRET_A), None);
    assert_wx_error(&wx.probe(&a).await, 42001, "access_token expired");
    assert_eq!(wx.fake.validity(&a), Validity::Expired);
    // Ending an already expired token early changes nothing: still 42001.
    wx.fake.expire_wecom_token(CORP, CORP_SECRET_A);
    assert_wx_error(&wx.probe(&a).await, 42001, "access_token expired");

    let renewed = wx.wecom(CORP, CORP_SECRET_A).await;
    let b = token_of(&renewed);
    assert_ne!(b, a);
    assert_eq!(expires_in(&renewed), 100);
    assert_wecom_probe_valid(&wx.probe(&b).await);
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_A), 2);
}

#[actix_web::test]
async fn wecom_errcodes() {
    let wx = Wx::start(|_| {}).await;

    let cases: [(String, i64, &str); 8] = [
        (
            format!("corpid=wwnobody&corpsecret={CORP_SECRET_A}"),
            40013,
            "invalid corpid",
        ),
        // The corpid is checked first.
        ("corpid=wwnobody".to_owned(), 40013, "invalid corpid"),
        // A WeChat appid is no corpid.
        (
            format!("corpid={APP}&corpsecret={SECRET}"),
            40013,
            "invalid corpid",
        ),
        (
            format!("corpid={CORP}&corpsecret=wrong"),
            40001,
            "invalid credential",
        ),
        // A valid secret of another corp is still the wrong secret.
        (
            format!("corpid={CORP}&corpsecret={OTHER_CORP_SECRET}"),
            40001,
            "invalid credential",
        ),
        (
            format!("corpsecret={CORP_SECRET_A}"),
            41002,
            "corpid missing",
        ),
        (format!("corpid={CORP}"), 41004, "corpsecret missing"),
        (
            format!("corpid={CORP}&corpsecret="),
            41004,
            "corpsecret missing",
        ),
    ];
    for (query, code, msg) in cases {
        let body = wx.get_json(&format!("/cgi-bin/gettoken?{query}")).await;
        assert_eq!(
            body,
            json!({ "errcode": code, "errmsg": msg }),
            "query: {query}"
        );
    }
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_A), 0);
    assert_eq!(wx.fake.current_wecom_token(CORP, CORP_SECRET_A), None);
    assert_eq!(wx.fake.calls(Endpoint::WecomToken), 8);
}

#[actix_web::test]
async fn expire_wecom_token_makes_the_probe_answer_40014_and_gettoken_mint_anew() {
    let wx = Wx::start(|_| {}).await;
    let a = token_of(&wx.wecom(CORP, CORP_SECRET_A).await);
    let b = token_of(&wx.wecom(CORP, CORP_SECRET_B).await);

    wx.fake.expire_wecom_token(CORP, CORP_SECRET_A);
    assert_wx_error(&wx.probe(&a).await, 40014, "invalid access_token");
    assert_eq!(wx.fake.validity(&a), Validity::Expired);
    assert_eq!(wx.fake.current_wecom_token(CORP, CORP_SECRET_A), None);
    // Only that app's token ends; the corp's other app keeps its own.
    assert_wecom_probe_valid(&wx.probe(&b).await);
    assert_eq!(token_of(&wx.wecom(CORP, CORP_SECRET_B).await), b);

    let renewed = wx.wecom(CORP, CORP_SECRET_A).await;
    let a2 = token_of(&renewed);
    assert_ne!(a2, a);
    assert_eq!(expires_in(&renewed), 7200);
    assert_wecom_probe_valid(&wx.probe(&a2).await);
    assert_wx_error(&wx.probe(&a).await, 40014, "invalid access_token");
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_A), 2);
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_B), 1);

    // Unknown apps are ignored.
    wx.fake.expire_wecom_token(CORP, "wrong");
    wx.fake.expire_wecom_token("wwnobody", CORP_SECRET_A);
    assert_wecom_probe_valid(&wx.probe(&a2).await);
}

// ---- faults ---------------------------------------------------------------------------------

#[actix_web::test]
async fn errcode_fault_answers_n_calls_of_either_token_endpoint_then_stops() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::Errcode(-1), 2);

    assert_wx_error(&wx.token().await, -1, "system error");
    assert_wx_error(&wx.stable(false).await, -1, "system error");
    token_of(&wx.token().await);

    assert_eq!(wx.fake.calls(Endpoint::Token), 2);
    assert_eq!(wx.fake.calls(Endpoint::StableToken), 1);
    assert_eq!(wx.fake.minted(APP), 1);
}

#[actix_web::test]
async fn errcode_faults_carry_wechats_errmsg() {
    let wx = Wx::start(|_| {}).await;
    let cases = [
        (-1, "system error"),
        (40013, "invalid appid"),
        (40125, "invalid appsecret"),
        (45009, "reach max api daily quota limit"),
        (45011, "api minute-quota reach limit"),
        (99999, "fault injected"),
    ];
    for (code, msg) in cases {
        wx.fake.inject(Fault::Errcode(code), 1);
        assert_wx_error(&wx.token().await, code, msg);
    }
    wx.fake.inject(Fault::Errcode(40164), 1);
    let body = wx.token().await;
    assert_eq!(errcode(&body), 40164);
    assert!(errmsg(&body).starts_with("invalid ip "), "{body}");
    assert!(errmsg(&body).ends_with(", not in whitelist"), "{body}");
    assert_eq!(wx.fake.minted(APP), 0);
}

#[actix_web::test]
async fn faults_run_in_injection_order_and_skip_the_probe() {
    let wx = Wx::start(|_| {}).await;
    let t = token_of(&wx.token().await);
    wx.fake.inject(Fault::Errcode(-1), 1);
    wx.fake.inject(Fault::Http(502), 1);

    assert_probe_valid(&wx.probe(&t).await);
    assert_eq!(errcode(&wx.token().await), -1);
    assert_eq!(wx.get_raw("/cgi-bin/token").await.0, 502);
    token_of(&wx.token().await);
}

#[actix_web::test]
async fn http_fault_answers_that_status_with_a_text_body() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::Http(503), 2);
    let query = format!("/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}");

    for _ in 0..2 {
        let (status, body) = wx.get_raw(&query).await;
        assert_eq!(status, 503);
        assert!(serde_json::from_str::<Value>(&body).is_err(), "{body}");
    }
    token_of(&wx.token().await);
    assert_eq!(wx.fake.minted(APP), 1);
}

#[actix_web::test]
async fn not_json_fault_answers_200_with_html() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::NotJson, 1);

    let mut res = wx
        .client
        .get(wx.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
        )))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let body = res.body().await.expect("body");
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    token_of(&wx.token().await);
}

#[actix_web::test]
async fn slow_fault_delays_then_answers_normally() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::Slow(Duration::from_millis(600)), 2);

    let started = Instant::now();
    token_of(&wx.token().await);
    assert!(started.elapsed() >= Duration::from_millis(600));

    // A client with a shorter timeout gives up; the fault is used all the same.
    let impatient = Client::builder()
        .timeout(Duration::from_millis(200))
        .finish();
    let err = impatient
        .get(wx.url(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
        )))
        .send()
        .await
        .expect_err("times out");
    assert!(matches!(err, SendRequestError::Timeout), "{err:?}");

    let started = Instant::now();
    token_of(&wx.token().await);
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// What a dropped connection looks like to awc: `send()` itself fails, because not a byte of
/// the response arrives before the connection closes. Over plain HTTP awc reports the early EOF
/// as `Connect(Disconnected)` (although the connection had been made); over TLS rustls reports
/// the missing close_notify as an `UnexpectedEof` I/O error while the response head is read.
async fn assert_dropped(client: &Client, url: &str) {
    let err = client
        .get(url)
        .send()
        .await
        .expect_err("the connection is dropped before any answer");
    let https = url.starts_with("https:");
    match &err {
        SendRequestError::Connect(ConnectError::Disconnected) if !https => {}
        SendRequestError::Response(ParseError::Io(io))
            if https && io.kind() == std::io::ErrorKind::UnexpectedEof => {}
        _ => panic!("unexpected error for a dropped connection: {err:?}"),
    }
}

#[actix_web::test]
async fn drop_fault_closes_the_connection_without_an_answer() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::Drop, 2);
    let url = wx.url(&format!(
        "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
    ));

    assert_dropped(&wx.client, &url).await;
    assert_dropped(&wx.client, &url).await;
    token_of(&wx.token().await);
    assert_eq!(wx.fake.calls(Endpoint::Token), 3);
    assert_eq!(wx.fake.minted(APP), 1);
}

#[actix_web::test]
async fn clear_faults_forgets_unused_faults() {
    let wx = Wx::start(|_| {}).await;
    wx.fake.inject(Fault::Errcode(-1), 5);
    assert_eq!(errcode(&wx.token().await), -1);

    wx.fake.clear_faults();
    token_of(&wx.token().await);
}

#[actix_web::test]
async fn faults_apply_to_getticket_and_gettoken_in_injection_order() {
    let wx = Wx::start(|_| {}).await;
    let t = token_of(&wx.token().await);
    wx.fake.inject(Fault::Errcode(-1), 1);
    wx.fake.inject(Fault::Errcode(40013), 2);
    wx.fake.inject(Fault::Http(502), 1);

    assert_wx_error(&wx.ticket(&t, "jsapi").await, -1, "system error");
    // The same code in each platform's words.
    assert_wx_error(&wx.token().await, 40013, "invalid appid");
    assert_wx_error(
        &wx.wecom(CORP, CORP_SECRET_A).await,
        40013,
        "invalid corpid",
    );
    let (status, _) = wx
        .get_raw(&format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret={CORP_SECRET_A}"
        ))
        .await;
    assert_eq!(status, 502);
    // The probe never gets faults, and they are used up now.
    assert_probe_valid(&wx.probe(&t).await);
    ticket_of(&wx.ticket(&t, "jsapi").await);
    token_of(&wx.wecom(CORP, CORP_SECRET_A).await);

    assert_eq!(wx.fake.calls(Endpoint::Ticket), 2);
    assert_eq!(wx.fake.calls(Endpoint::WecomToken), 3);
    assert_eq!(wx.fake.tickets_minted(APP), 1);
    assert_eq!(wx.fake.wecom_minted(CORP, CORP_SECRET_A), 1);
}

// ---- control endpoints ----------------------------------------------------------------------

#[actix_web::test]
async fn stats_endpoint_reports_calls_and_mints() {
    let wx = Wx::start(|_| {}).await;
    let t = token_of(&wx.token().await);
    token_of(&wx.stable(false).await);
    token_of(&wx.stable(false).await);
    wx.probe(&t).await;

    ticket_of(&wx.ticket(&t, "jsapi").await);
    ticket_of(&wx.ticket(&t, "wx_card").await);
    assert_eq!(errcode(&wx.ticket(&t, "bogus").await), 40097);
    token_of(&wx.wecom(CORP, CORP_SECRET_A).await);
    token_of(&wx.wecom(CORP, CORP_SECRET_A).await);

    let stats = wx.get_json("/_fake/stats").await;
    assert_eq!(
        stats,
        json!({
            "calls": {
                "token": 1,
                "stable_token": 2,
                "probe": 1,
                "ticket": 3,
                "wecom_token": 2,
            },
            // One call at a time, all answered.
            "in_flight": 0,
            "peak_in_flight": 1,
            "minted": { APP: 2, OTHER_APP: 0 },
            "tickets_minted": { APP: 2, OTHER_APP: 0 },
        })
    );
    // The WeCom secret picks the app; it must not leak through the stats.
    assert!(!stats.to_string().contains(CORP_SECRET_A), "{stats}");
}

#[actix_web::test]
async fn answer_delay_holds_every_call_and_the_peak_counts_them_at_once() {
    let delay = Duration::from_millis(200);
    let wx = Wx::start(|c| c.answer_delay = delay).await;
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..5).map(|_| wx.token())).await;
    assert!(started.elapsed() >= delay, "answered after the delay");
    for a in &answers {
        token_of(a);
    }
    assert_eq!(
        wx.fake.peak_in_flight(),
        5,
        "five calls were answered at once"
    );
    assert_eq!(wx.fake.in_flight(), 0);
    let stats = wx.get_json("/_fake/stats").await;
    assert_eq!(stats["peak_in_flight"], 5, "{stats}");
}

#[actix_web::test]
async fn fault_endpoint_injects_each_kind() {
    let wx = Wx::start(|_| {}).await;
    let url = wx.url(&format!(
        "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
    ));

    let injections = [
        json!({ "kind": "errcode", "errcode": 40164, "times": 1 }),
        json!({ "kind": "http", "status": 500, "times": 1 }),
        json!({ "kind": "not_json", "times": 1 }),
        json!({ "kind": "slow", "millis": 300, "times": 1 }),
        json!({ "kind": "drop", "times": 1 }),
    ];
    for body in injections {
        assert_eq!(wx.control("/_fake/fault", body).await, 204);
    }

    assert_eq!(errcode(&wx.token().await), 40164);
    assert_eq!(wx.get_raw("/cgi-bin/token").await.0, 500);
    let (status, body) = wx.get_raw("/cgi-bin/token").await;
    assert_eq!(status, 200);
    assert!(body.contains("<html>"), "{body}");
    let started = Instant::now();
    token_of(&wx.token().await);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_dropped(&wx.client, &url).await;
    token_of(&wx.token().await);
}

#[actix_web::test]
async fn clear_and_expires_in_endpoints() {
    let wx = Wx::start(|_| {}).await;

    assert_eq!(
        wx.control(
            "/_fake/fault",
            json!({ "kind": "errcode", "errcode": -1, "times": 3 })
        )
        .await,
        204
    );
    assert_eq!(wx.control("/_fake/clear", json!({})).await, 204);
    assert_eq!(
        wx.control("/_fake/expires_in", json!({ "secs": 1234 }))
            .await,
        204
    );

    assert_eq!(expires_in(&wx.token().await), 1234);
}

#[actix_web::test]
async fn control_endpoints_reject_bad_bodies() {
    let wx = Wx::start(|_| {}).await;
    for body in [
        json!({ "kind": "bogus", "times": 1 }),
        json!({ "kind": "http", "times": 1 }),
        json!({ "kind": "http", "status": 42 }),
        json!({ "kind": "errcode", "errcode": -1, "tims": 1 }),
        json!("drop"),
    ] {
        assert_eq!(
            wx.control("/_fake/fault", body.clone()).await,
            400,
            "{body}"
        );
    }
    assert_eq!(
        wx.control("/_fake/expires_in", json!({ "sec": 5 })).await,
        400
    );
    // Nothing was injected by the rejected bodies.
    token_of(&wx.token().await);
}

#[actix_web::test]
async fn unknown_paths_are_404() {
    let wx = Wx::start(|_| {}).await;
    for path in [
        "/",
        "/cgi-bin/tokens",
        // A path no API of WeChat's or WeCom's has.
        "/cgi-bin/service/get_nothing",
        "/_fake/nope",
    ] {
        assert_eq!(wx.get_raw(path).await.0, 404, "{path}");
    }
}

// ---- lifecycle and HTTPS --------------------------------------------------------------------

#[actix_web::test]
async fn base_url_matches_the_bound_address_and_stop_closes_it() {
    let wx = Wx::start(|_| {}).await;
    let addr = wx.fake.addr();
    assert!(addr.ip().is_loopback());
    assert_ne!(addr.port(), 0);
    assert_eq!(wx.fake.base_url(), format!("http://{addr}"));
    token_of(&wx.token().await);

    let url = wx.url("/cgi-bin/token");
    let other_handle = wx.fake.clone();
    wx.fake.stop().await;
    other_handle.stopped().await;

    let err = Client::default()
        .get(&url)
        .send()
        .await
        .expect_err("stopped server refuses connections");
    assert!(matches!(err, SendRequestError::Connect(_)), "{err:?}");
}

#[actix_web::test]
async fn listens_where_configured() {
    let fake = FakeWechat::start(FakeConfig {
        listen: "127.0.0.2:0".parse().expect("address"),
        ..config()
    })
    .await
    .expect("fake starts");
    assert_eq!(fake.addr().ip().to_string(), "127.0.0.2");
    assert!(fake.base_url().starts_with("http://127.0.0.2:"));
    let mut res = Client::default()
        .get(format!("{}/_fake/stats", fake.base_url()))
        .send()
        .await
        .expect("answered");
    assert_eq!(res.status().as_u16(), 200);
    res.body().await.expect("body");
}

#[actix_web::test]
async fn run_until_signal_returns_when_another_handle_stops_the_fake() {
    let fake = FakeWechat::start(config()).await.expect("fake starts");
    let runner = fake.clone();
    let (ran, ()) = tokio::join!(runner.run_until_signal(), fake.stop());
    ran.expect("clean return");
}

#[actix_web::test]
async fn https_with_a_certificate_the_client_trusts() {
    let (tls, ca, _) = test_pki();
    let fake = FakeWechat::start(FakeConfig {
        tls: Some(tls),
        ..config()
    })
    .await
    .expect("fake starts with TLS");
    assert_eq!(fake.base_url(), format!("https://{}", fake.addr()));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA accepted as a root");
    let client_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let client = Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(client_config)))
        .finish();

    let url = format!(
        "{}/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}",
        fake.base_url()
    );
    let mut res = client.get(&url).send().await.expect("HTTPS answered");
    let body: Value = serde_json::from_slice(&res.body().await.expect("body")).expect("JSON");
    token_of(&body);

    // The Drop fault looks the same over TLS.
    fake.inject(Fault::Drop, 1);
    assert_dropped(&client, &url).await;

    // A client that does not trust the test CA is refused: the certificate is really checked.
    let err = Client::default()
        .get(&url)
        .send()
        .await
        .expect_err("untrusted certificate");
    assert!(matches!(err, SendRequestError::Connect(_)), "{err:?}");
    assert_eq!(fake.minted(APP), 1);
}

#[actix_web::test]
async fn bad_tls_material_is_an_error_at_start() {
    let result = FakeWechat::start(FakeConfig {
        tls: Some(FakeTls {
            cert_pem: "not a certificate".into(),
            key_pem: "not a key".into(),
        }),
        ..config()
    })
    .await;
    let err = result.expect_err("start refuses bad PEM");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[actix_web::test]
async fn answer_delay_makes_calls_overlap_and_the_peak_in_flight_counts_them() {
    let delay = Duration::from_millis(300);
    let wx = Wx::start(|c| c.answer_delay = delay).await;
    let started = Instant::now();
    let answers = futures_util::future::join_all((0..5).map(|_| wx.token())).await;
    // Five calls at once, each held for the delay: together they take about one delay, not five.
    let took = started.elapsed();
    assert!(took >= delay, "answered after {took:?}, before the delay");
    assert!(took < delay * 4, "calls were answered one by one: {took:?}");
    for a in &answers {
        assert!(a["access_token"].is_string(), "{a}");
    }
    assert_eq!(wx.fake.peak_in_flight(), 5);
    assert_eq!(wx.fake.in_flight(), 0);

    // The probe is no credential call: it neither waits nor counts.
    let token = answers[0]["access_token"].as_str().expect("token");
    let probed = Instant::now();
    wx.probe(token).await;
    assert!(probed.elapsed() < delay, "the probe waited");

    let counters = wx.get_json("/_fake/counters").await;
    assert_eq!(counters["peak_in_flight"], 5, "{counters}");
    assert_eq!(counters["in_flight"], 0, "{counters}");
    assert_eq!(counters["calls"]["token"], 5, "{counters}");
    assert_eq!(counters["calls"]["probe"], 1, "{counters}");
}

//! The fake WeChat's business endpoints over real HTTP with awc: each success shape, the token
//! checks (41001, 40001, 42001, WeCom's words), media uploads and downloads byte for byte, the
//! logins' secret and code checks, what is counted and recorded, and faults aimed at
//! `Endpoint::Api`.

use std::time::Duration;

use awc::Client;
use serde_json::{json, Value};
use wxtoken::fake::{Endpoint, FakeConfig, FakeWechat, Fault, Validity};

const APP: &str = "wx1234567890abcdef";
const SECRET: &str = "the-app-secret";
const OTHER_APP: &str = "wxfedcba0987654321";
const OTHER_SECRET: &str = "the-other-secret";
const CORP: &str = "ww1234567890abcdef";
const CORP_SECRET: &str = "corp-app-secret";

const USER_INFO: &str = "/cgi-bin/user/info";
const FOLLOWERS: &str = "/cgi-bin/user/get";
const MENU: &str = "/cgi-bin/menu/get";
const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
const UPLOAD: &str = "/cgi-bin/media/upload";
const MEDIA_GET: &str = "/cgi-bin/media/get";
const JSCODE: &str = "/sns/jscode2session";
const OAUTH: &str = "/sns/oauth2/access_token";

/// WeChat's content type on JSON answers, errors included.
const WECHAT_JSON: &str = "application/json; encoding=utf-8";
const NOT_LATEST: &str = "invalid credential, access_token is invalid or not latest";
const MIB: usize = 1 << 20;

/// A started fake and a client for it.
struct Wx {
    fake: FakeWechat,
    client: Client,
}

/// An answer: status, content type and body.
struct Reply {
    status: u16,
    content_type: String,
    headers: awc::http::header::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    /// The JSON body of a WeChat answer: HTTP 200, WeChat's content type.
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.content_type, WECHAT_JSON);
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

impl Wx {
    async fn start() -> Wx {
        let cfg = FakeConfig {
            apps: vec![
                (APP.into(), SECRET.into()),
                (OTHER_APP.into(), OTHER_SECRET.into()),
            ],
            wecom_apps: vec![(CORP.into(), CORP_SECRET.into())],
            ..FakeConfig::default()
        };
        Wx {
            fake: FakeWechat::start(cfg).await.expect("fake starts"),
            client: Client::builder().timeout(Duration::from_secs(30)).finish(),
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.fake.base_url())
    }

    async fn reply(
        mut res: awc::ClientResponse<
            impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>>
                + Unpin,
        >,
    ) -> Reply {
        let body = res.body().limit(64 * MIB).await.expect("body read");
        Reply {
            status: res.status().as_u16(),
            content_type: res
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            headers: res.headers().clone(),
            body: body.to_vec(),
        }
    }

    async fn get(&self, path_and_query: &str) -> Reply {
        let res = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("request answered");
        Wx::reply(res).await
    }

    async fn get_json(&self, path_and_query: &str) -> Value {
        self.get(path_and_query).await.json()
    }

    async fn post(&self, path_and_query: &str, content_type: &str, body: Vec<u8>) -> Reply {
        let res = self
            .client
            .post(self.url(path_and_query))
            .insert_header(("content-type", content_type))
            .send_body(body)
            .await
            .expect("request answered");
        Wx::reply(res).await
    }

    /// A new `/cgi-bin/token` token for that app.
    async fn token_for(&self, appid: &str, secret: &str) -> String {
        let v = self
            .get_json(&format!(
                "/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}"
            ))
            .await;
        v["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {v}"))
            .to_owned()
    }

    async fn token(&self) -> String {
        self.token_for(APP, SECRET).await
    }

    async fn send_message(&self, token: &str, body: &str) -> Value {
        self.post(
            &format!("{CUSTOM_SEND}?access_token={token}"),
            "application/json",
            body.as_bytes().to_vec(),
        )
        .await
        .json()
    }

    async fn upload(&self, token: &str, kind: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.post(
            &format!("{UPLOAD}?access_token={token}&type={kind}"),
            content_type,
            body,
        )
        .await
    }
}

fn assert_wx_error(v: &Value, code: i64, msg: &str) {
    assert_eq!(v, &json!({ "errcode": code, "errmsg": msg }));
}

const TEXT_MESSAGE: &str =
    r#"{"touser":"o-user","msgtype":"text","text":{"content":"hello 你好"}}"#;

/// Bytes that look random (xorshift), so that a copy error anywhere shows.
fn media_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

const BOUNDARY: &str = "wxtoken-test-boundary-5f1c9e0b7a3d42";

/// A multipart/form-data body with these `(name, filename, content type, data)` parts, as
/// requests (under wechatpy) writes it.
fn multipart(parts: &[(&str, &str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let body = wxtoken::fake::multipart_body(BOUNDARY, parts);
    (format!("multipart/form-data; boundary={BOUNDARY}"), body)
}

// ---- success shapes -------------------------------------------------------------------------

#[actix_web::test]
async fn user_info_answers_a_subscribed_user() {
    let wx = Wx::start().await;
    let t = wx.token().await;

    let v = wx
        .get_json(&format!(
            "{USER_INFO}?access_token={t}&openid=o-user-1&lang=en"
        ))
        .await;
    assert_eq!(v["subscribe"], 1, "{v}");
    assert_eq!(v["openid"], "o-user-1");
    assert_eq!(v["language"], "en");
    assert!(
        v["nickname"].is_string() && v["subscribe_time"].is_u64(),
        "{v}"
    );
    assert!(
        v.get("errcode").is_none(),
        "WeChat's successes carry no errcode: {v}"
    );
    let unionid = v["unionid"].as_str().expect("unionid").to_owned();

    // The same user the next time; another user is another unionid; lang defaults to zh_CN.
    let again = wx
        .get_json(&format!("{USER_INFO}?access_token={t}&openid=o-user-1"))
        .await;
    assert_eq!(again["unionid"], unionid.as_str());
    assert_eq!(again["language"], "zh_CN");
    let other = wx
        .get_json(&format!("{USER_INFO}?access_token={t}&openid=o-user-2"))
        .await;
    assert_ne!(other["unionid"], unionid.as_str());

    assert_wx_error(
        &wx.get_json(&format!("{USER_INFO}?access_token={t}")).await,
        40003,
        "invalid openid",
    );
}

#[actix_web::test]
async fn followers_page_ends_as_wechatpy_expects() {
    let wx = Wx::start().await;
    let t = wx.token().await;

    let first = wx.get_json(&format!("{FOLLOWERS}?access_token={t}")).await;
    let openids: Vec<String> = first["data"]["openid"]
        .as_array()
        .unwrap_or_else(|| panic!("no data.openid in {first}"))
        .iter()
        .map(|v| v.as_str().expect("openid string").to_owned())
        .collect();
    assert_eq!(first["total"], openids.len());
    assert_eq!(first["count"], openids.len());
    assert!(!openids.is_empty());
    let last = openids.last().expect("a follower");
    assert_eq!(first["next_openid"], last.as_str());

    // After the last one: no data, an empty next_openid (wechatpy's iter_followers stops).
    let end = wx
        .get_json(&format!("{FOLLOWERS}?access_token={t}&next_openid={last}"))
        .await;
    assert_eq!(
        end,
        json!({ "total": openids.len(), "count": 0, "next_openid": "" })
    );
    // Starting after the first: the rest.
    let rest = wx
        .get_json(&format!(
            "{FOLLOWERS}?access_token={t}&next_openid={}",
            openids[0]
        ))
        .await;
    assert_eq!(rest["data"]["openid"], json!(openids[1..]));

    assert_wx_error(
        &wx.get_json(&format!(
            "{FOLLOWERS}?access_token={t}&next_openid=o-stranger"
        ))
        .await,
        40003,
        "invalid openid",
    );
    // Followers are per account.
    let other = wx.token_for(OTHER_APP, OTHER_SECRET).await;
    let theirs = wx
        .get_json(&format!("{FOLLOWERS}?access_token={other}"))
        .await;
    assert_ne!(theirs["data"]["openid"], first["data"]["openid"]);
}

#[actix_web::test]
async fn menu_get_answers_a_menu() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let v = wx.get_json(&format!("{MENU}?access_token={t}")).await;
    let buttons = v["menu"]["button"]
        .as_array()
        .unwrap_or_else(|| panic!("no menu.button in {v}"));
    assert!(!buttons.is_empty());
    assert!(buttons.iter().all(|b| b["name"].is_string()), "{v}");
}

#[actix_web::test]
async fn custom_send_keeps_accepted_messages_only() {
    let wx = Wx::start().await;
    let t = wx.token().await;

    assert_eq!(
        wx.send_message(&t, TEXT_MESSAGE).await,
        json!({ "errcode": 0, "errmsg": "ok" })
    );
    for (body, code, msg) in [
        ("not json", 47001, "data format error"),
        ("[1, 2]", 47001, "data format error"),
        (r#"{"msgtype":"text"}"#, 40003, "invalid openid"),
        (r#"{"touser":"o-user"}"#, 40008, "invalid message type"),
    ] {
        assert_wx_error(&wx.send_message(&t, body).await, code, msg);
    }
    let sent: Value = serde_json::from_str(TEXT_MESSAGE).expect("JSON");
    assert_eq!(wx.fake.messages_sent(), vec![sent]);
    assert_eq!(wx.fake.api_calls(CUSTOM_SEND), 5);
}

// ---- the token check ------------------------------------------------------------------------

#[actix_web::test]
async fn a_missing_token_is_41001_on_a_get_and_the_post() {
    let wx = Wx::start().await;
    for query in ["", "?access_token=", "?access_token&openid=o-user"] {
        let v = wx.get_json(&format!("{USER_INFO}{query}")).await;
        assert_wx_error(&v, 41001, "access_token missing");
    }
    let v = wx
        .post(CUSTOM_SEND, "application/json", TEXT_MESSAGE.into())
        .await
        .json();
    assert_wx_error(&v, 41001, "access_token missing");
    assert!(wx.fake.messages_sent().is_empty());
}

#[actix_web::test]
async fn a_token_replaced_by_two_newer_fetches_is_40001_on_a_get_and_the_post() {
    let wx = Wx::start().await;
    let old = wx.token().await;
    let previous = wx.token().await;
    let current = wx.token().await;
    assert_eq!(wx.fake.validity(&old), Validity::Replaced);

    let info = |t: &str| format!("{USER_INFO}?access_token={t}&openid=o-user");
    assert_wx_error(&wx.get_json(&info(&old)).await, 40001, NOT_LATEST);
    assert_wx_error(
        &wx.send_message(&old, TEXT_MESSAGE).await,
        40001,
        NOT_LATEST,
    );
    assert_wx_error(&wx.get_json(&info("never-minted")).await, 40001, NOT_LATEST);
    assert!(wx.fake.messages_sent().is_empty());

    // The one before the current still works during its overlap, as on WeChat.
    for t in [&previous, &current] {
        assert_eq!(wx.get_json(&info(t)).await["openid"], "o-user");
    }
    assert_eq!(wx.send_message(&current, TEXT_MESSAGE).await["errcode"], 0);
}

#[actix_web::test]
async fn an_expired_token_is_42001_on_a_get_and_the_post() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    wx.fake.advance_clock(Duration::from_secs(7201));
    assert_eq!(wx.fake.validity(&t), Validity::Expired);

    assert_wx_error(
        &wx.get_json(&format!("{MENU}?access_token={t}")).await,
        42001,
        "access_token expired",
    );
    assert_wx_error(
        &wx.send_message(&t, TEXT_MESSAGE).await,
        42001,
        "access_token expired",
    );
    let fresh = wx.token().await;
    assert!(wx.get_json(&format!("{MENU}?access_token={fresh}")).await["menu"].is_object());
}

#[actix_web::test]
async fn stable_and_wecom_tokens_are_checked_too_wecom_in_its_own_words() {
    let wx = Wx::start().await;
    let stable = wx
        .post(
            "/cgi-bin/stable_token",
            "application/json",
            json!({ "grant_type": "client_credential", "appid": APP, "secret": SECRET })
                .to_string()
                .into(),
        )
        .await
        .json()["access_token"]
        .as_str()
        .expect("stable token")
        .to_owned();
    assert!(wx.get_json(&format!("{MENU}?access_token={stable}")).await["menu"].is_object());

    let wecom = wx
        .get_json(&format!(
            "/cgi-bin/gettoken?corpid={CORP}&corpsecret={CORP_SECRET}"
        ))
        .await["access_token"]
        .as_str()
        .expect("WeCom token")
        .to_owned();
    let v = wx.get_json(&format!("{MENU}?access_token={wecom}")).await;
    assert_eq!(
        (&v["errcode"], &v["errmsg"]),
        (&json!(0), &json!("ok")),
        "{v}"
    );
    assert!(v["menu"].is_object(), "{v}");

    // Ended early by WeCom: 40014, in WeCom's words.
    wx.fake.expire_wecom_token(CORP, CORP_SECRET);
    assert_wx_error(
        &wx.get_json(&format!("{MENU}?access_token={wecom}")).await,
        40014,
        "invalid access_token",
    );
}

#[actix_web::test]
async fn wrong_methods_get_wechats_method_errcodes() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let v = wx
        .post(
            &format!("{MENU}?access_token={t}"),
            "application/json",
            b"{}".to_vec(),
        )
        .await
        .json();
    assert_wx_error(&v, 43001, "require GET method");
    let v = wx
        .get_json(&format!("{CUSTOM_SEND}?access_token={t}"))
        .await;
    assert_wx_error(&v, 43002, "require POST method");
}

// ---- media ----------------------------------------------------------------------------------

#[actix_web::test]
async fn a_10_mib_upload_is_stored_byte_identical() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let data = media_bytes(10 * MIB, 7);
    let (content_type, body) = multipart(&[
        ("description", "d.json", Some("application/json"), b"{}"),
        ("media", "photo.png", Some("image/png"), &data),
    ]);

    let v = wx.upload(&t, "image", &content_type, body).await.json();
    assert_eq!(v["type"], "image", "{v}");
    assert!(v["created_at"].is_u64(), "{v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(3), "{v}");
    let media_id = v["media_id"].as_str().expect("media_id");

    let (stored, stored_type) = wx.fake.media(media_id).expect("stored");
    assert!(stored == data, "the stored media differs from the upload");
    assert_eq!(stored_type, "image/png");
}

#[actix_web::test]
async fn uploads_of_32_mib_are_accepted_and_a_part_without_a_type_gets_the_media_types() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let data = media_bytes(32 * MIB, 11);
    let (content_type, body) = multipart(&[("media", "clip", None, &data)]);

    let v = wx.upload(&t, "video", &content_type, body).await.json();
    let media_id = v["media_id"].as_str().unwrap_or_else(|| panic!("{v}"));
    let (stored, stored_type) = wx.fake.media(media_id).expect("stored");
    assert_eq!(stored.len(), data.len());
    assert_eq!(stored_type, "video/mp4");

    let (content_type, body) = multipart(&[("media", "v.amr", None, b"#!AMR\n")]);
    let v = wx.upload(&t, "voice", &content_type, body).await.json();
    let media_id = v["media_id"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        wx.fake.media(media_id).map(|m| m.1),
        Some("audio/amr".to_owned())
    );
}

#[actix_web::test]
async fn upload_errcodes() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let (form, without_media) = multipart(&[("file", "a.jpg", None, b"jpeg")]);
    let (_, with_media) = multipart(&[("media", "a.jpg", None, b"jpeg")]);
    let mut cut = with_media.clone();
    cut.truncate(cut.len() - 10);

    let cases: [(&str, &str, Vec<u8>, i64, &str); 6] = [
        (
            "gif",
            &form,
            with_media.clone(),
            40004,
            "invalid media type",
        ),
        ("image", &form, without_media, 41005, "media data missing"),
        (
            "image",
            "application/json",
            with_media.clone(),
            41005,
            "media data missing",
        ),
        (
            "image",
            "multipart/form-data",
            with_media,
            41005,
            "media data missing",
        ),
        ("image", &form, cut, 47001, "data format error"),
        (
            "image",
            &form,
            b"garbage with no boundary at all".to_vec(),
            47001,
            "data format error",
        ),
    ];
    for (kind, content_type, body, code, msg) in cases {
        let v = wx.upload(&t, kind, content_type, body).await.json();
        assert_wx_error(&v, code, msg);
    }
    assert_eq!(wx.fake.api_calls(UPLOAD), 6);
}

#[actix_web::test]
async fn a_10_mib_download_arrives_byte_identical_with_its_headers() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let data = media_bytes(10 * MIB, 3);
    let media_id = wx.fake.put_media(data.clone(), "image/jpeg");

    let r = wx
        .get(&format!("{MEDIA_GET}?access_token={t}&media_id={media_id}"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "image/jpeg");
    assert_eq!(
        r.header("content-disposition"),
        format!("attachment; filename=\"{media_id}.jpg\"")
    );
    assert_eq!(r.header("content-length"), data.len().to_string());
    assert!(r.body == data, "the download differs from the stored media");

    assert_wx_error(
        &wx.get_json(&format!("{MEDIA_GET}?access_token={t}&media_id=nope"))
            .await,
        40007,
        "invalid media_id",
    );
    assert_wx_error(
        &wx.get_json(&format!("{MEDIA_GET}?media_id={media_id}"))
            .await,
        41001,
        "access_token missing",
    );
}

#[actix_web::test]
async fn an_uploaded_media_downloads_as_it_was_sent() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let data = media_bytes(100_000, 5);
    let (content_type, body) = multipart(&[("media", "t.gif", Some("image/gif"), &data)]);
    let v = wx.upload(&t, "thumb", &content_type, body).await.json();
    let media_id = v["media_id"].as_str().unwrap_or_else(|| panic!("{v}"));

    let r = wx
        .get(&format!("{MEDIA_GET}?access_token={t}&media_id={media_id}"))
        .await;
    assert_eq!(r.content_type, "image/gif");
    assert!(r.header("content-disposition").ends_with(".gif\""));
    assert!(r.body == data);
}

// ---- the logins -----------------------------------------------------------------------------

fn login_query(path: &str, appid: &str, secret: &str, code_name: &str, code: &str) -> String {
    format!("{path}?appid={appid}&secret={secret}&{code_name}={code}&grant_type=authorization_code")
}

#[actix_web::test]
async fn jscode2session_checks_the_apps_real_secret_and_takes_a_code_once() {
    let wx = Wx::start().await;
    let q = |appid, secret, code| login_query(JSCODE, appid, secret, "js_code", code);

    assert_wx_error(
        &wx.get_json(&q(APP, "wrong-secret", "code-1")).await,
        40125,
        "invalid appsecret",
    );
    assert_wx_error(
        &wx.get_json(&q("wxunknown000000000", SECRET, "code-1"))
            .await,
        40013,
        "invalid appid",
    );
    // Another app's secret is a wrong one.
    assert_wx_error(
        &wx.get_json(&q(APP, OTHER_SECRET, "code-1")).await,
        40125,
        "invalid appsecret",
    );

    let v = wx.get_json(&q(APP, SECRET, "code-1")).await;
    let openid = v["openid"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        v,
        json!({ "openid": openid, "session_key": v["session_key"], "unionid": v["unionid"] })
    );
    assert_eq!(v["session_key"].as_str().map(str::len), Some(24), "{v}");
    // The user logged in is a follower of that app, with the unionid user/info reports.
    let t = wx.token().await;
    let followers = wx.get_json(&format!("{FOLLOWERS}?access_token={t}")).await;
    assert!(
        followers["data"]["openid"]
            .as_array()
            .is_some_and(|all| all.iter().any(|o| o == openid)),
        "{followers}"
    );
    let info = wx
        .get_json(&format!("{USER_INFO}?access_token={t}&openid={openid}"))
        .await;
    assert_eq!(info["unionid"], v["unionid"]);

    assert_wx_error(
        &wx.get_json(&q(APP, SECRET, "code-1")).await,
        40029,
        "invalid code",
    );
    assert_wx_error(
        &wx.get_json(&q(APP, SECRET, "")).await,
        40029,
        "invalid code",
    );
    // The code was another app's to use, too.
    assert!(wx.get_json(&q(OTHER_APP, OTHER_SECRET, "code-1")).await["openid"].is_string());

    let no_grant = format!("{JSCODE}?appid={APP}&secret={SECRET}&js_code=code-2");
    assert_wx_error(&wx.get_json(&no_grant).await, 40002, "invalid grant_type");
    // wechatpy adds the client's access_token to the query: it is ignored, even a bad one.
    let with_token = format!("{}&access_token=stale", q(APP, SECRET, "code-3"));
    assert!(wx.get_json(&with_token).await["openid"].is_string());
}

#[actix_web::test]
async fn oauth_access_token_mints_a_user_token_that_is_no_app_token() {
    let wx = Wx::start().await;
    let q = |secret, code| login_query(OAUTH, APP, secret, "code", code);

    assert_wx_error(
        &wx.get_json(&q("wrong-secret", "c1")).await,
        40125,
        "invalid appsecret",
    );
    let v = wx.get_json(&q(SECRET, "c1")).await;
    let user_token = v["access_token"].as_str().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(
        v,
        json!({
            "access_token": user_token,
            "expires_in": 7200,
            "refresh_token": v["refresh_token"],
            "openid": v["openid"],
            "scope": "snsapi_base",
        })
    );
    assert!(v["refresh_token"].is_string() && v["openid"].is_string());
    assert_wx_error(&wx.get_json(&q(SECRET, "c1")).await, 40029, "invalid code");
    assert_wx_error(&wx.get_json(&q(SECRET, "")).await, 40029, "invalid code");

    assert_eq!(wx.fake.validity(user_token), Validity::Unknown);
    assert_wx_error(
        &wx.get_json(&format!("{MENU}?access_token={user_token}"))
            .await,
        40001,
        NOT_LATEST,
    );
    assert_eq!(wx.fake.minted(APP), 0, "a login mints no app token");
}

// ---- counters and records -------------------------------------------------------------------

#[actix_web::test]
async fn every_request_is_counted_and_the_last_sixteen_recorded_per_path() {
    let wx = Wx::start().await;
    let t = wx.token().await;

    wx.get_json(&format!(
        "{USER_INFO}?access_token={t}&openid=o%2Buser+1&lang=en&lang=zh_CN"
    ))
    .await;
    wx.get_json(&format!("{USER_INFO}?access_token=bad&openid=o"))
        .await;
    wx.get_json(USER_INFO).await;
    wx.send_message(&t, TEXT_MESSAGE).await;

    assert_eq!(wx.fake.api_calls(USER_INFO), 3);
    assert_eq!(wx.fake.api_calls(CUSTOM_SEND), 1);
    assert_eq!(wx.fake.api_calls(MENU), 0);
    assert_eq!(wx.fake.api_calls("/cgi-bin/nowhere"), 0);
    assert_eq!(wx.fake.calls(Endpoint::Api), 4);

    let requests = wx.fake.api_requests(USER_INFO);
    assert_eq!(requests.len(), 3);
    let first = &requests[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("GET", USER_INFO)
    );
    assert_eq!(
        first.query,
        [
            ("access_token", t.as_str()),
            ("openid", "o+user 1"),
            ("lang", "en"),
            ("lang", "zh_CN"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert!(first.headers.iter().any(|(k, _)| k == "host"), "{first:?}");
    assert!(first.headers.iter().all(|(k, _)| *k == k.to_lowercase()));
    assert!(first.body.is_empty());
    assert_eq!(requests[2].query, []);

    let post = &wx.fake.api_requests(CUSTOM_SEND)[0];
    assert_eq!(post.method, "POST");
    assert_eq!(&post.body[..], TEXT_MESSAGE.as_bytes());
    assert_eq!(post.header("content-type"), Some("application/json"));

    for i in 0..20 {
        wx.get_json(&format!("{MENU}?access_token={t}&n={i}")).await;
    }
    let kept = wx.fake.api_requests(MENU);
    assert_eq!(kept.len(), 16);
    assert_eq!(kept[0].query_param("n"), Some("4"));
    assert_eq!(kept[15].query_param("n"), Some("19"));
    assert_eq!(wx.fake.api_calls(MENU), 20);

    // The control API says the same.
    let v: Value = serde_json::from_slice(
        &wx.get(&format!("/_fake/api_calls?path={USER_INFO}"))
            .await
            .body,
    )
    .expect("JSON");
    assert_eq!(v, json!({ "path": USER_INFO, "calls": 3 }));
    assert_eq!(wx.get("/_fake/api_calls").await.status, 400);
}

// ---- faults ---------------------------------------------------------------------------------

#[actix_web::test]
async fn faults_aimed_at_api_break_business_calls_and_are_counted() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    let menu = format!("{MENU}?access_token={t}");

    wx.fake.inject_at(Endpoint::Api, Fault::Http(502), 1);
    wx.fake.inject_at(Endpoint::Api, Fault::Errcode(-1), 1);
    // A token fetch in between takes none of them.
    wx.token().await;
    assert_eq!(wx.get(&menu).await.status, 502);
    assert_wx_error(&wx.send_message(&t, TEXT_MESSAGE).await, -1, "system error");
    assert!(
        wx.fake.messages_sent().is_empty(),
        "a faulted send is not kept"
    );
    assert!(wx.get_json(&menu).await["menu"].is_object());

    // A dropped connection, aimed over the control API.
    let res = wx
        .client
        .post(wx.url("/_fake/fault"))
        .send_json(&json!({ "kind": "drop", "endpoint": "api" }))
        .await
        .expect("control answered");
    assert_eq!(res.status().as_u16(), 204);
    assert!(wx.client.get(wx.url(&menu)).send().await.is_err());

    assert_eq!(wx.fake.api_calls(MENU), 3);
    assert_eq!(wx.fake.api_calls(CUSTOM_SEND), 1);
    assert_eq!(wx.fake.api_requests(CUSTOM_SEND).len(), 1);
}

#[actix_web::test]
async fn the_shared_fault_queue_leaves_business_calls_alone() {
    let wx = Wx::start().await;
    let t = wx.token().await;
    wx.fake.inject(Fault::Errcode(-1), 1);

    assert!(wx.get_json(&format!("{MENU}?access_token={t}")).await["menu"].is_object());
    let v = wx
        .get_json(&format!(
            "/cgi-bin/token?grant_type=client_credential&appid={APP}&secret={SECRET}"
        ))
        .await;
    assert_wx_error(&v, -1, "system error");
}

//! The fake's business API: a few of WeChat's everyday endpoints (user info, followers, the menu,
//! customer-service messages, temporary media, the Mini Program and OAuth logins), what they
//! record, and the [`FakeWechat`] methods that read it. They exist so that a gateway which
//! injects the access_token and forwards calls can be tested over real HTTP.
//!
//! Every endpoint that takes an `access_token` checks it with the probe's rules
//! ([`FakeState::probe`]): missing 41001, replaced or unknown 40001, expired 42001, and a WeCom
//! token in WeCom's words. The two logins take the app's secret instead, checked as
//! `/cgi-bin/token` checks it, and web OAuth on behalf of an account authorized to a platform
//! takes the platform's component token. Answers are shaped as wechatpy 1.8 parses them.
//!
//! A request is counted and recorded the moment it reaches a business path, before a fault or a
//! check can answer it: a test sees what the gateway sent whatever came back. Faults come only
//! from the queue aimed at [`Endpoint::Api`]; the shared queue belongs to the credential
//! endpoints, so a test that breaks token fetching does not break business calls by accident.
//!
//! Everything kept is bounded (requests per path, media bytes, messages, used codes), so a
//! benchmark can run the fake for hours.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt;

use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::http::Method;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::routes::{bad_request, injected_fault, lock, platform_error, wechat_json, Shared};
use super::state::{fingerprint, present, random_token, Credentials, Platform, WxError};
use super::{Endpoint, FakeWechat};

/// Requests kept per path for [`FakeWechat::api_requests`]: enough for a test to look at a
/// retry and what came before it, few enough that 16 uploads of 32 MiB are the worst case.
const RECENT_REQUESTS: usize = 16;

/// The largest `media/upload` body read: 32 MiB of media with room to spare for the multipart
/// framing. WeChat's own limits (10 MB for an image or a video, 2 MB for a voice, 64 KB for a
/// thumb) are not enforced, so that tests can push big bodies through a gateway.
const UPLOAD_BODY_LIMIT: usize = 64 << 20;

/// The largest JSON body read (`message/custom/send`): WeChat's messages are a few kilobytes.
const JSON_BODY_LIMIT: usize = 1 << 20;

/// Stored media, in bytes, before the oldest are forgotten (a forgotten media_id answers 40007,
/// as an expired one does on WeChat, which keeps temporary media three days).
const MEDIA_BYTES_KEPT: usize = 512 << 20;

/// Accepted customer-service messages kept for [`FakeWechat::messages_sent`].
const MESSAGES_KEPT: usize = 10_000;

/// Login codes remembered as used, per kind, before the oldest are forgotten.
const USED_CODES_KEPT: usize = 100_000;

/// Every account has this many followers; the logins hand out one of them.
const FOLLOWERS: usize = 3;

/// The lifetime of an OAuth user access_token: WeChat's, not the fake's configured one, which
/// is about app tokens.
const USER_TOKEN_EXPIRES_IN: u64 = 7200;

/// Length of minted media ids (WeChat's are 64 characters) and OAuth user tokens.
const MEDIA_ID_LEN: usize = 64;
const USER_TOKEN_LEN: usize = 88;

/// The `lang` values `user/info` knows; anything else is answered in the default, `zh_CN`.
const LANGUAGES: [&str; 3] = ["zh_CN", "zh_TW", "en"];

/// Query parameters whose values [`FakeApiRequest`]'s `Debug` replaces with a fingerprint.
const SECRET_PARAMS: [&str; 5] = ["access_token", "secret", "js_code", "code", "refresh_token"];

// ---- what is recorded -----------------------------------------------------------------------

/// One request that reached a business endpoint, as it arrived.
#[derive(Clone, PartialEq, Eq)]
pub struct FakeApiRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query (`/cgi-bin/user/info`).
    pub path: String,
    /// The query's parameters, percent-decoded, in the order sent (repeats kept).
    pub query: Vec<(String, String)>,
    /// The headers, names in lower case; a value that is not UTF-8 is decoded lossily.
    pub headers: Vec<(String, String)>,
    /// The body as received (empty when it could not be read, e.g. over the size limit).
    pub body: Bytes,
    /// The caller's address: tells calls on one kept-alive connection from a new one each.
    pub peer: Option<std::net::SocketAddr>,
}

impl FakeApiRequest {
    /// The first value of that query parameter.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        param(&self.query, name)
    }

    /// The first value of that header (`name` in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Written by hand: a test that prints a request must not print the token or the secret it
/// carried (they appear as fingerprints), nor megabytes of body (its length only).
impl fmt::Debug for FakeApiRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let query: Vec<(&str, String)> = self
            .query
            .iter()
            .map(|(k, v)| {
                let shown = if SECRET_PARAMS.contains(&k.as_str()) {
                    format!("<{}>", fingerprint(v))
                } else {
                    v.clone()
                };
                (k.as_str(), shown)
            })
            .collect();
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| match k.as_str() {
                "authorization" | "cookie" => (k.as_str(), "<redacted>"),
                _ => (k.as_str(), v.as_str()),
            })
            .collect();
        f.debug_struct("FakeApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &query)
            .field("headers", &headers)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// One path's counter and its most recent requests.
#[derive(Debug, Default)]
struct PathLog {
    calls: u64,
    recent: VecDeque<FakeApiRequest>,
}

/// One stored temporary media.
struct Media {
    bytes: Bytes,
    content_type: String,
}

/// Written by hand: the bytes may be megabytes.
impl fmt::Debug for Media {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Media")
            .field("len", &self.bytes.len())
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// Temporary media by media_id, the oldest forgotten past [`MEDIA_BYTES_KEPT`].
#[derive(Debug, Default)]
struct MediaStore {
    items: HashMap<String, Media>,
    /// Store order, oldest first.
    order: VecDeque<String>,
    bytes: usize,
}

impl MediaStore {
    fn put(&mut self, media: Media) -> String {
        let media_id = loop {
            let candidate = random_token(MEDIA_ID_LEN);
            // As with tokens: a repeat is astronomically unlikely, but would lose a media.
            if !self.items.contains_key(&candidate) {
                break candidate;
            }
        };
        self.bytes = self.bytes.saturating_add(media.bytes.len());
        self.items.insert(media_id.clone(), media);
        self.order.push_back(media_id.clone());
        // The newest is kept even if it alone is over the bound: it was just promised.
        while self.bytes > MEDIA_BYTES_KEPT && self.order.len() > 1 {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.items.remove(&oldest) {
                self.bytes = self.bytes.saturating_sub(gone.bytes.len());
            }
        }
        media_id
    }
}

/// Login codes already used, per appid: WeChat accepts a code once.
#[derive(Debug, Default)]
struct UsedCodes {
    seen: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl UsedCodes {
    /// Marks the code used; true if it had not been.
    fn first_use(&mut self, appid: &str, code: &str) -> bool {
        let key = (appid.to_owned(), code.to_owned());
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > USED_CODES_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
        true
    }
}

/// The business API's bookkeeping, owned by `FakeState` so that one lock covers the token
/// check and what the call records.
#[derive(Debug, Default)]
pub(crate) struct BusinessState {
    paths: HashMap<&'static str, PathLog>,
    media: MediaStore,
    messages: VecDeque<Value>,
    js_codes: UsedCodes,
    oauth_codes: UsedCodes,
}

impl BusinessState {
    /// A request reached `path`: count it and keep it among the most recent.
    fn arrived(&mut self, path: &'static str, request: FakeApiRequest) {
        let log = self.paths.entry(path).or_default();
        log.calls += 1;
        if log.recent.len() == RECENT_REQUESTS {
            log.recent.pop_front();
        }
        log.recent.push_back(request);
    }

    fn calls(&self, path: &str) -> u64 {
        self.paths.get(path).map_or(0, |log| log.calls)
    }

    fn requests(&self, path: &str) -> Vec<FakeApiRequest> {
        self.paths
            .get(path)
            .map(|log| log.recent.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stores media and returns its new media_id. A content type that could not be sent back
    /// as a header is stored as `application/octet-stream`, so a download never fails on it.
    fn put_media(&mut self, bytes: Bytes, content_type: &str) -> String {
        let content_type = if HeaderValue::from_str(content_type).is_ok() {
            content_type.to_owned()
        } else {
            "application/octet-stream".to_owned()
        };
        self.media.put(Media {
            bytes,
            content_type,
        })
    }

    fn media(&self, media_id: &str) -> Option<&Media> {
        self.media.items.get(media_id)
    }

    fn message_sent(&mut self, message: Value) {
        if self.messages.len() == MESSAGES_KEPT {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }
}

// ---- the FakeWechat methods -----------------------------------------------------------------

/// The business API, for tests in the same process.
impl FakeWechat {
    /// Requests that reached the business endpoint at `path` (`/cgi-bin/user/info`, ...), whatever
    /// they were answered: token errors and injected faults included.
    pub fn api_calls(&self, path: &str) -> u64 {
        self.lock().business_ref().calls(path)
    }

    /// The last requests (up to 16) that reached the business endpoint at `path`, oldest first.
    pub fn api_requests(&self, path: &str) -> Vec<FakeApiRequest> {
        self.lock().business_ref().requests(path)
    }

    /// Stores media as an upload would, and returns its media_id (for `media/get` tests).
    pub fn put_media(&self, bytes: Vec<u8>, content_type: &str) -> String {
        self.lock()
            .business()
            .put_media(Bytes::from(bytes), content_type)
    }

    /// The bytes and content type of a stored media (uploaded, or put by a test).
    pub fn media(&self, media_id: &str) -> Option<(Vec<u8>, String)> {
        self.lock()
            .business_ref()
            .media(media_id)
            .map(|m| (m.bytes.to_vec(), m.content_type.clone()))
    }

    /// The JSON bodies of the accepted `message/custom/send` calls, oldest first (the last
    /// 10,000).
    pub fn messages_sent(&self) -> Vec<Value> {
        self.lock()
            .business_ref()
            .messages
            .iter()
            .cloned()
            .collect()
    }
}

// ---- the endpoints --------------------------------------------------------------------------

/// The business endpoints the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    UserInfo,
    Followers,
    Menu,
    CustomSend,
    MediaUpload,
    MediaGet,
    JsCodeToSession,
    OauthToken,
    ComponentOauthToken,
}

impl Route {
    const ALL: [Route; 9] = [
        Route::UserInfo,
        Route::Followers,
        Route::Menu,
        Route::CustomSend,
        Route::MediaUpload,
        Route::MediaGet,
        Route::JsCodeToSession,
        Route::OauthToken,
        Route::ComponentOauthToken,
    ];

    fn path(self) -> &'static str {
        match self {
            Route::UserInfo => "/cgi-bin/user/info",
            Route::Followers => "/cgi-bin/user/get",
            Route::Menu => "/cgi-bin/menu/get",
            Route::CustomSend => "/cgi-bin/message/custom/send",
            Route::MediaUpload => "/cgi-bin/media/upload",
            Route::MediaGet => "/cgi-bin/media/get",
            Route::JsCodeToSession => "/sns/jscode2session",
            Route::OauthToken => "/sns/oauth2/access_token",
            Route::ComponentOauthToken => "/sns/oauth2/component/access_token",
        }
    }

    fn method(self) -> Method {
        match self {
            Route::CustomSend | Route::MediaUpload => Method::POST,
            _ => Method::GET,
        }
    }

    fn body_limit(self) -> usize {
        match self {
            Route::MediaUpload => UPLOAD_BODY_LIMIT,
            _ => JSON_BODY_LIMIT,
        }
    }

    /// The logins check an app's secret (or, on behalf of an account, the platform's component
    /// token); everything else an access_token.
    fn takes_token(self) -> bool {
        !matches!(
            self,
            Route::JsCodeToSession | Route::OauthToken | Route::ComponentOauthToken
        )
    }
}

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    for route in Route::ALL {
        cfg.service(
            web::resource(route.path())
                .app_data(web::PayloadConfig::new(route.body_limit()))
                .route(web::route().to(
                    move |req: HttpRequest,
                          body: Result<Bytes, actix_web::Error>,
                          state: web::Data<Shared>| {
                        serve(route, req, body, state)
                    },
                )),
        );
    }
    cfg.route("/_fake/api_calls", web::get().to(api_calls));
}

/// A request body as the handler sees it: read, or why not.
enum Body {
    Read(Bytes),
    TooLarge,
    Unreadable,
}

/// What a business call answers when it succeeds.
enum Answer {
    Json(Value),
    Media { media_id: String, media: MediaCopy },
}

/// A stored media's bytes (shared, not copied) and type, taken out from under the lock.
struct MediaCopy {
    bytes: Bytes,
    content_type: String,
}

/// What an endpoint gets once the call is recorded, no fault took it and its token, if it takes
/// one, is good.
struct Call<'a> {
    req: &'a HttpRequest,
    query: &'a [(String, String)],
    body: Body,
    state: &'a Shared,
    /// Whose token the call carried (for the followers of that account).
    owner: Option<String>,
}

impl Call<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        present(param(self.query, name))
    }
}

async fn serve(
    route: Route,
    req: HttpRequest,
    body: Result<Bytes, actix_web::Error>,
    state: web::Data<Shared>,
) -> HttpResponse {
    let query = decoded_query(&req);
    let body = match body {
        Ok(bytes) => Body::Read(bytes),
        Err(err) => match err.as_error::<PayloadError>() {
            Some(PayloadError::Overflow) => Body::TooLarge,
            _ => Body::Unreadable,
        },
    };
    {
        let recorded = FakeApiRequest {
            method: req.method().as_str().to_owned(),
            path: req.path().to_owned(),
            query: query.clone(),
            headers: req
                .headers()
                .iter()
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_owned(), value)
                })
                .collect(),
            body: match &body {
                Body::Read(bytes) => bytes.clone(),
                Body::TooLarge | Body::Unreadable => Bytes::new(),
            },
            peer: req.peer_addr(),
        };
        let mut s = lock(&state);
        s.count(Endpoint::Api);
        s.business().arrived(route.path(), recorded);
    }
    if let Some(faulted) = injected_fault(&state, Endpoint::Api).await {
        return faulted;
    }
    if req.method() != route.method() {
        let err = if route.method() == Method::GET {
            WxError::REQUIRE_GET
        } else {
            WxError::REQUIRE_POST
        };
        return platform_error(Platform::Wechat, err);
    }

    let (platform, owner) = if route.takes_token() {
        let s = lock(&state);
        let Some(token) = present(param(&query, "access_token")) else {
            return platform_error(Platform::Wechat, WxError::TOKEN_MISSING);
        };
        let (platform, verdict) = s.probe(token);
        if let Err(err) = verdict {
            return platform_error(platform, err);
        }
        (platform, s.token_owner(token).map(str::to_owned))
    } else {
        (Platform::Wechat, None)
    };

    let call = Call {
        req: &req,
        query: &query,
        body,
        state: &state,
        owner,
    };
    let answer = match route {
        Route::UserInfo => user_info(&call),
        Route::Followers => followers(&call),
        Route::Menu => Ok(Answer::Json(menu())),
        Route::CustomSend => custom_send(call),
        Route::MediaUpload => media_upload(call).await,
        Route::MediaGet => media_get(&call),
        Route::JsCodeToSession => js_code_to_session(&call),
        Route::OauthToken => oauth_token(&call),
        Route::ComponentOauthToken => component_oauth_token(&call),
    };
    match answer {
        Ok(Answer::Json(body)) => wechat_json(success_body(platform, body)),
        Ok(Answer::Media { media_id, media }) => media_download(&media_id, media),
        Err(err) => platform_error(platform, err),
    }
}

/// WeCom puts `"errcode":0,"errmsg":"ok"` in its success bodies; WeChat leaves them out.
fn success_body(platform: Platform, mut body: Value) -> Value {
    if platform == Platform::Wecom {
        if let Some(fields) = body.as_object_mut() {
            fields.insert("errcode".into(), 0.into());
            fields.insert("errmsg".into(), "ok".into());
        }
    }
    body
}

/// `GET /cgi-bin/user/info?openid=OPENID[&lang=zh_CN]`: every openid is a subscribed user.
fn user_info(call: &Call) -> Result<Answer, WxError> {
    let openid = call.param("openid").ok_or(WxError::INVALID_OPENID)?;
    let language = call
        .param("lang")
        .filter(|lang| LANGUAGES.contains(lang))
        .unwrap_or(LANGUAGES[0]);
    Ok(Answer::Json(json!({
        "subscribe": 1,
        "openid": openid,
        "nickname": "fake user",
        "sex": 0,
        "language": language,
        "city": "",
        "province": "",
        "country": "",
        "headimgurl": "",
        // A fixed moment (2023-11-14): answers stay comparable from run to run.
        "subscribe_time": 1_700_000_000,
        "unionid": unionid_of(openid),
        "remark": "",
        "groupid": 0,
        "tagid_list": [],
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "qr_scene": 0,
        "qr_scene_str": "",
    })))
}

/// `GET /cgi-bin/user/get[?next_openid=OPENID]`: the account's followers after `next_openid`,
/// in one page. As on WeChat, `next_openid` in the answer is the page's last openid, and the
/// page after the last one has `"count":0`, an empty `next_openid` and no `data` (which is how
/// wechatpy's `iter_followers` knows it is done). An openid that is not a follower: 40003.
fn followers(call: &Call) -> Result<Answer, WxError> {
    let all = followers_of(call.owner.as_deref().unwrap_or_default());
    let start = match call.param("next_openid") {
        None => 0,
        Some(after) => {
            all.iter()
                .position(|openid| openid == after)
                .ok_or(WxError::INVALID_OPENID)?
                + 1
        }
    };
    let page = &all[start..];
    let mut body = json!({ "total": all.len(), "count": page.len() });
    match page.last() {
        Some(last) => {
            body["data"] = json!({ "openid": page });
            body["next_openid"] = last.as_str().into();
        }
        None => body["next_openid"] = "".into(),
    }
    Ok(Answer::Json(body))
}

/// `GET /cgi-bin/menu/get`: a small menu, one button of each common kind.
fn menu() -> Value {
    json!({
        "menu": {
            "button": [
                { "type": "click", "name": "Today", "key": "V1001_TODAY", "sub_button": [] },
                {
                    "name": "More",
                    "sub_button": [
                        { "type": "view", "name": "Home", "url": "https://example.com/", "sub_button": [] },
                    ],
                },
            ],
        },
    })
}

/// `POST /cgi-bin/message/custom/send` with a JSON message: 47001 for a body that is not a
/// JSON object, 40003 without a `touser`, 40008 without a `msgtype`; otherwise kept.
fn custom_send(call: Call) -> Result<Answer, WxError> {
    let Body::Read(bytes) = call.body else {
        return Err(WxError::DATA_FORMAT);
    };
    let message: Value = serde_json::from_slice(&bytes).map_err(|_| WxError::DATA_FORMAT)?;
    if !message.is_object() {
        return Err(WxError::DATA_FORMAT);
    }
    let field = |name: &str| present(message.get(name).and_then(Value::as_str));
    if field("touser").is_none() {
        return Err(WxError::INVALID_OPENID);
    }
    if field("msgtype").is_none() {
        return Err(WxError::INVALID_MESSAGE_TYPE);
    }
    lock(call.state).business().message_sent(message);
    Ok(Answer::Json(json!({ "errcode": 0, "errmsg": "ok" })))
}

/// The media types `media/upload` takes, with the content type stored when the part names none
/// (wechatpy, through requests, sends none).
const MEDIA_TYPES: [(&str, &str); 4] = [
    ("image", "image/jpeg"),
    ("voice", "audio/amr"),
    ("video", "video/mp4"),
    ("thumb", "image/jpeg"),
];

/// `POST /cgi-bin/media/upload?type=TYPE` with a multipart/form-data body whose `media` part is
/// the file: 40004 for another type, 40006 for a body over the limit, 41005 when there is no
/// `media` part (or no multipart body at all), 47001 for a multipart body that does not parse.
async fn media_upload(call: Call<'_>) -> Result<Answer, WxError> {
    let (kind, default_type) = call
        .param("type")
        .and_then(|kind| MEDIA_TYPES.into_iter().find(|(k, _)| *k == kind))
        .ok_or(WxError::INVALID_MEDIA_TYPE)?;
    let bytes = match call.body {
        Body::Read(bytes) => bytes,
        Body::TooLarge => return Err(WxError::INVALID_MEDIA_SIZE),
        Body::Unreadable => return Err(WxError::MEDIA_MISSING),
    };
    let content_type = call
        .req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let part = media_part(content_type, bytes).await?;
    let mut s = lock(call.state);
    let created_at = s.unix_now();
    let stored_type = part.content_type.as_deref().unwrap_or(default_type);
    let media_id = s.business().put_media(part.bytes, stored_type);
    Ok(Answer::Json(json!({
        "type": kind,
        "media_id": media_id,
        "created_at": created_at,
    })))
}

/// The `media` part of a multipart/form-data body.
#[derive(Debug)]
struct MediaPart {
    bytes: Bytes,
    /// The part's own Content-Type, if it had one.
    content_type: Option<String>,
}

/// Finds the `media` part of a multipart/form-data body (other parts are skipped): 41005 when
/// the body is not multipart or has no non-empty `media` part, 47001 when it does not parse.
async fn media_part(content_type: Option<&str>, body: Bytes) -> Result<MediaPart, WxError> {
    let boundary = content_type
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or(WxError::MEDIA_MISSING)?;
    // The body is already in memory (it is recorded), so the parser gets it as one chunk.
    let stream = futures_util::stream::once(async move { Ok::<Bytes, Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|_| WxError::DATA_FORMAT)?
            .ok_or(WxError::MEDIA_MISSING)?;
        if field.name() != Some("media") {
            continue;
        }
        let content_type = field.content_type().map(ToString::to_string);
        let bytes = field.bytes().await.map_err(|_| WxError::DATA_FORMAT)?;
        if bytes.is_empty() {
            return Err(WxError::MEDIA_MISSING);
        }
        return Ok(MediaPart {
            bytes,
            content_type,
        });
    }
}

/// `GET /cgi-bin/media/get?media_id=ID`: the stored bytes; 40007 for an unknown media_id.
fn media_get(call: &Call) -> Result<Answer, WxError> {
    let media_id = call.param("media_id").ok_or(WxError::INVALID_MEDIA_ID)?;
    let s = lock(call.state);
    let media = s
        .business_ref()
        .media(media_id)
        .ok_or(WxError::INVALID_MEDIA_ID)?;
    Ok(Answer::Media {
        media_id: media_id.to_owned(),
        media: MediaCopy {
            bytes: media.bytes.clone(),
            content_type: media.content_type.clone(),
        },
    })
}

/// A media download as WeChat sends it: the bytes with their type, as an attachment named after
/// the media_id. actix-web adds the Content-Length of a body of known size.
fn media_download(media_id: &str, media: MediaCopy) -> HttpResponse {
    let disposition = format!(
        "attachment; filename=\"{media_id}.{}\"",
        extension(&media.content_type)
    );
    HttpResponse::Ok()
        .content_type(media.content_type)
        .insert_header((CONTENT_DISPOSITION, disposition))
        .body(media.bytes)
}

/// The file extension WeChat gives a media of that content type.
fn extension(content_type: &str) -> &'static str {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "audio/amr" => "amr",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "video/mp4" => "mp4",
        _ => "bin",
    }
}

/// The credentials of a login request, as sent.
fn login_credentials<'q>(call: &'q Call) -> Credentials<'q> {
    Credentials {
        grant_type: param(call.query, "grant_type"),
        appid: param(call.query, "appid"),
        secret: param(call.query, "secret"),
    }
}

/// `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`, the Mini
/// Program login: the app's credentials as `/cgi-bin/token` checks them (40002, 41002, 40013,
/// 41004, 40125), then the code, which works once (40029). An `access_token` in the query (which
/// wechatpy adds) is ignored.
fn js_code_to_session(call: &Call) -> Result<Answer, WxError> {
    let mut s = lock(call.state);
    let appid = s.check_login(login_credentials(call))?;
    let code = call.param("js_code").ok_or(WxError::INVALID_CODE)?;
    if !s.business().js_codes.first_use(appid, code) {
        return Err(WxError::INVALID_CODE);
    }
    let openid = login_openid(appid, code);
    let mut session_key = [0u8; 16];
    rand::rng().fill(&mut session_key[..]);
    Ok(Answer::Json(json!({
        "openid": openid,
        "session_key": STANDARD.encode(session_key),
        "unionid": unionid_of(&openid),
    })))
}

/// `GET /sns/oauth2/access_token?appid&secret&code&grant_type=authorization_code`, the web
/// OAuth login, checked like `jscode2session`. The user access_token it mints is not an app
/// token: no business endpoint accepts it, and it is not kept.
fn oauth_token(call: &Call) -> Result<Answer, WxError> {
    let mut s = lock(call.state);
    let appid = s.check_login(login_credentials(call))?;
    user_token(&mut s, call, appid)
}

/// The user's OAuth token for `appid`, for the call's `code` (each works once).
fn user_token(
    s: &mut super::state::FakeState,
    call: &Call,
    appid: &str,
) -> Result<Answer, WxError> {
    let code = call.param("code").ok_or(WxError::INVALID_CODE)?;
    if !s.business().oauth_codes.first_use(appid, code) {
        return Err(WxError::INVALID_CODE);
    }
    Ok(Answer::Json(json!({
        "access_token": random_token(USER_TOKEN_LEN),
        "expires_in": USER_TOKEN_EXPIRES_IN,
        "refresh_token": random_token(USER_TOKEN_LEN),
        "openid": login_openid(appid, code),
        "scope": "snsapi_base",
    })))
}

/// `GET /sns/oauth2/component/access_token?appid&code&grant_type=authorization_code
/// &component_appid&component_access_token`: web OAuth on behalf of an account authorized to a
/// platform, checked with the platform's component token instead of an AppSecret.
fn component_oauth_token(call: &Call) -> Result<Answer, WxError> {
    if param(call.query, "grant_type") != Some("authorization_code") {
        return Err(WxError::INVALID_GRANT_TYPE);
    }
    let mut s = lock(call.state);
    {
        let (component, m) = s.component();
        component.check_token(
            param(call.query, "component_access_token"),
            param(call.query, "component_appid"),
            m.now,
        )?;
    }
    let appid = present(param(call.query, "appid")).ok_or(WxError::APPID_MISSING)?;
    user_token(&mut s, call, appid)
}

/// `GET /_fake/api_calls?path=/cgi-bin/user/info`: `{"path":..,"calls":N}`.
async fn api_calls(req: HttpRequest, state: web::Data<Shared>) -> HttpResponse {
    let query = decoded_query(&req);
    let Some(path) = present(param(&query, "path")) else {
        return bad_request("needs ?path=/cgi-bin/...");
    };
    let calls = lock(&state).business_ref().calls(path);
    HttpResponse::Ok().json(json!({ "path": path, "calls": calls }))
}

// ---- helpers --------------------------------------------------------------------------------

/// The query's parameters, decoded, in order; a malformed query string counts as empty, so the
/// request gets the errcode for what is missing.
fn decoded_query(req: &HttpRequest) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
}

/// The first value of that parameter.
fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// 27 URL-safe characters derived from the input: openids and unionids look like WeChat's (28
/// characters, `o` first) and stay the same from run to run.
fn derived_id(input: &str) -> String {
    let digest = Sha256::digest(input.as_bytes());
    let mut id = String::from("o");
    id.extend(URL_SAFE_NO_PAD.encode(digest).chars().take(27));
    id
}

/// The openids of the account's followers (an openid is per account).
fn followers_of(appid: &str) -> Vec<String> {
    (0..FOLLOWERS)
        .map(|i| derived_id(&format!("openid:{appid}:{i}")))
        .collect()
}

/// The follower a login code stands for: the code picks one, so different codes may log in
/// different users, and the same code always the same one.
fn login_openid(appid: &str, code: &str) -> String {
    let pick = usize::from(Sha256::digest(code.as_bytes())[0]) % FOLLOWERS;
    derived_id(&format!("openid:{appid}:{pick}"))
}

/// The unionid of the user behind an openid.
fn unionid_of(openid: &str) -> String {
    derived_id(&format!("unionid:{openid}"))
}

/// A multipart/form-data body of these `(name, filename, content type, data)` parts, written
/// as clients write an upload: for the tests of the upload route, here and through the proxy.
pub fn multipart_body(boundary: &str, parts: &[(&str, &str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content_type, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        body.extend_from_slice(
            format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n")
                .as_bytes(),
        );
        if let Some(ct) = content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    /// [`multipart_body`] with every part's file named `f`: the name never matters here.
    fn multipart(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Bytes {
        let parts: Vec<_> = parts.iter().map(|&(n, ct, d)| (n, "f", ct, d)).collect();
        Bytes::from(multipart_body(boundary, &parts))
    }

    const FORM: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn media_part_is_found_among_other_parts_with_its_type() {
        let body = multipart(
            "XyZ",
            &[
                ("description", None, b"{}"),
                (
                    "media",
                    Some("image/png"),
                    b"\x89PNG\r\n\0--XyZ is no delimiter without CRLF\r\n",
                ),
            ],
        );
        let part = block_on(media_part(Some(FORM), body)).expect("media part");
        assert_eq!(
            &part.bytes[..],
            b"\x89PNG\r\n\0--XyZ is no delimiter without CRLF\r\n"
        );
        assert_eq!(part.content_type.as_deref(), Some("image/png"));
    }

    #[test]
    fn media_part_errcodes() {
        let no_media = multipart("XyZ", &[("other", None, b"x")]);
        assert_eq!(
            block_on(media_part(Some(FORM), no_media.clone())).unwrap_err(),
            WxError::MEDIA_MISSING
        );
        let empty = multipart("XyZ", &[("media", None, b"")]);
        assert_eq!(
            block_on(media_part(Some(FORM), empty)).unwrap_err(),
            WxError::MEDIA_MISSING
        );
        for content_type in [None, Some("application/json"), Some("multipart/form-data")] {
            assert_eq!(
                block_on(media_part(content_type, no_media.clone())).unwrap_err(),
                WxError::MEDIA_MISSING,
                "{content_type:?}"
            );
        }
    }

    #[test]
    fn hostile_multipart_bodies_get_an_errcode() {
        let cut = multipart("XyZ", &[("media", None, b"abcdef")]);
        let hostile: Vec<Bytes> = vec![
            Bytes::from_static(b""),
            Bytes::from_static(b"--XyZ"),
            Bytes::from_static(b"--XyZ\r\n\r\n\r\n--XyZ--"),
            Bytes::from_static(b"--XyZ\r\nContent-Disposition: form-data; name=\"media\"\r\n"),
            Bytes::from_static(b"--XyZ\r\nContent-Disposition: \xff\xfe; name=\"media\"\r\n\r\nx"),
            Bytes::from(vec![b'-'; 100_000]),
            cut.slice(..cut.len() - 12),
        ];
        for body in hostile {
            let got = block_on(media_part(Some(FORM), body.clone()));
            assert!(
                matches!(got, Err(WxError::MEDIA_MISSING | WxError::DATA_FORMAT)),
                "{body:?}: {got:?}"
            );
        }
    }

    #[test]
    fn recent_requests_keep_the_last_sixteen_per_path() {
        let mut b = BusinessState::default();
        for i in 0..20 {
            b.arrived(
                Route::Menu.path(),
                FakeApiRequest {
                    method: "GET".into(),
                    path: Route::Menu.path().into(),
                    query: vec![("i".into(), i.to_string())],
                    headers: Vec::new(),
                    body: Bytes::new(),
                    peer: None,
                },
            );
        }
        assert_eq!(b.calls(Route::Menu.path()), 20);
        assert_eq!(b.calls(Route::UserInfo.path()), 0);
        let kept = b.requests(Route::Menu.path());
        assert_eq!(kept.len(), RECENT_REQUESTS);
        assert_eq!(kept[0].query_param("i"), Some("4"));
        assert_eq!(kept[15].query_param("i"), Some("19"));
    }

    #[test]
    fn media_store_forgets_the_oldest_past_its_byte_bound_but_keeps_the_newest() {
        let mut store = MediaStore::default();
        let chunk = || Media {
            bytes: Bytes::from(vec![0u8; MEDIA_BYTES_KEPT / 2]),
            content_type: "image/jpeg".into(),
        };
        let a = store.put(chunk());
        let b = store.put(chunk());
        let c = store.put(chunk());
        assert!(!store.items.contains_key(&a));
        assert!(store.items.contains_key(&b) && store.items.contains_key(&c));
        assert_eq!(store.bytes, MEDIA_BYTES_KEPT);
        let huge = store.put(Media {
            bytes: Bytes::from(vec![0u8; MEDIA_BYTES_KEPT + 1]),
            content_type: "video/mp4".into(),
        });
        assert_eq!(store.items.len(), 1);
        assert!(store.items.contains_key(&huge));
    }

    #[test]
    fn login_codes_work_once_per_app() {
        let mut codes = UsedCodes::default();
        assert!(codes.first_use("wxa", "code"));
        assert!(!codes.first_use("wxa", "code"));
        assert!(codes.first_use("wxb", "code"));
    }

    #[test]
    fn a_login_hands_out_a_follower_of_that_app() {
        let followers = followers_of("wxa");
        assert_eq!(followers.len(), FOLLOWERS);
        for code in ["a", "b", "c", "d"] {
            let openid = login_openid("wxa", code);
            assert!(followers.contains(&openid), "{openid}");
            assert_eq!(openid.len(), 28);
            assert!(openid.starts_with('o'));
        }
        assert!(!followers_of("wxb").contains(&followers[0]));
    }

    #[test]
    fn unusable_content_types_are_stored_as_octet_stream() {
        let mut b = BusinessState::default();
        let id = b.put_media(Bytes::from_static(b"x"), "text/plain\r\nx-evil: 1");
        assert_eq!(
            b.media(&id).map(|m| m.content_type.as_str()),
            Some("application/octet-stream")
        );
        assert_eq!(extension("IMAGE/PNG; q=1"), "png");
        assert_eq!(extension("application/octet-stream"), "bin");
    }

    #[test]
    fn debug_of_a_request_hides_tokens_secrets_and_the_body() {
        let request = FakeApiRequest {
            method: "GET".into(),
            path: "/sns/jscode2session".into(),
            query: vec![
                ("access_token".into(), "TOKEN-VALUE-1234".into()),
                ("secret".into(), "SECRET-VALUE-5678".into()),
                ("appid".into(), "wxapp".into()),
            ],
            headers: vec![("authorization".into(), "Bearer KEY-VALUE-9".into())],
            body: Bytes::from_static(b"BODY-VALUE-0"),
            peer: None,
        };
        let shown = format!("{request:?}");
        for hidden in ["TOKEN-VALUE", "SECRET-VALUE", "KEY-VALUE", "BODY-VALUE"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        assert!(
            shown.contains("wxapp") && shown.contains("body_len: 12"),
            "{shown}"
        );
    }
}

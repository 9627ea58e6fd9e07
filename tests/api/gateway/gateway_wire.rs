//! What crosses the gateway on the wire: upload bodies (sent on with their length, replayed
//! intact after a rejected token, given back when the client goes away mid-body) and headers
//! (none of one connection, every value of a repeated one).
//!
//! Callers that send `Connection` headers are raw sockets: awc, as actix-web, drops a
//! `Connection` header it is given and writes its own. For the same reason the answers that
//! name headers of their connection come from a [`RawUpstream`], standing in for WeCom.

use std::time::Duration;

use actix_web::web::Bytes;
use serde_json::Value;

use crate::support::gateway::{
    gateway_builder, gateway_config, rotate_behind_wxtoken, shop, BACKEND_KEY,
};
use crate::support::helpers::*;
use crate::support::raw_http::{blocking, read_answer, send, Raw};
use crate::support::raw_upstream::RawUpstream;

/// What the raw upstream answers to everything: a WeCom token answer, which the `corp` app's
/// fetch takes as its token, and which a forwarded call takes back as WeCom's answer (errcode
/// 0, so it is not repeated).
const WECOM_ANSWER: &str = r#"{"errcode":0,"errmsg":"ok","access_token":"raw-upstream-wecom-token-0000000000000000000000000000000000000001","expires_in":7200}"#;

/// A server with `shop` at the fake and `corp` (a WeCom app) at `wecom`, when given; `billing`
/// reads `shop`'s token.
async fn spawn(proxy: &str, wecom: Option<&RawUpstream>) -> TestApp {
    let config = gateway_config(proxy, [shop()]);
    let wecom = wecom.map(RawUpstream::base_url);
    gateway_builder(&config)
        .adjust(|(s, _)| {
            if let Some(url) = wecom {
                s.upstream.wecom_base_url = url;
            }
        })
        .start()
        .await
}

/// A GET on a fresh raw connection with the backend's key and the header `lines`; read until
/// the server closes it (send `Connection: close`).
async fn raw_get(app: &TestApp, path: &str, lines: &[&str]) -> Raw {
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BACKEND_KEY}\r\n"
    );
    for line in lines {
        head.push_str(line);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    blocking(move || {
        let mut s = send(addr, head.as_bytes());
        read_answer(&mut s, Duration::from_secs(10))
    })
    .await
}

/// The values of header `name` in a raw head, in order.
fn values<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The one forwarded call's head at the raw upstream (its token fetches are the others).
fn forwarded_head(upstream: &RawUpstream, path: &str) -> String {
    let heads: Vec<String> = upstream
        .heads()
        .into_iter()
        .filter(|h| h.contains(path))
        .collect();
    assert_eq!(heads.len(), 1, "{heads:?}");
    heads.into_iter().next().unwrap_or_default()
}

#[actix_web::test]
async fn headers_named_in_connection_are_not_forwarded_either_way() {
    let upstream = RawUpstream::start(
        "Content-Type: application/json\r\nConnection: keep-alive, X-Answer-Hop\r\n\
         connection: x-answer-hop-2\r\nX-Answer-Hop: 1\r\nX-Answer-Hop-2: 2\r\n\
         X-Answer-Kept: yes\r\n",
        WECOM_ANSWER,
    );
    let app = spawn("", Some(&upstream)).await;
    let answer = raw_get(
        &app,
        "/v1/apps/corp/proxy/cgi-bin/user/get",
        &[
            "Connection: close, X-Caller-Hop",
            "CONNECTION: x-caller-hop-2 ,",
            "X-Caller-Hop: 1",
            "x-caller-hop-2: 2",
            "X-Caller-Kept: yes",
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    assert_eq!(answer.body["errcode"], 0, "WeCom's answer came back");
    let sent = forwarded_head(&upstream, "/cgi-bin/user/get");
    assert_eq!(values(&sent, "x-caller-kept"), ["yes"], "{sent}");
    for hop in ["x-caller-hop", "x-caller-hop-2"] {
        assert!(values(&sent, hop).is_empty(), "{hop} reached WeCom: {sent}");
    }
    assert_eq!(
        values(&answer.head, "x-answer-kept"),
        ["yes"],
        "{}",
        answer.head
    );
    for hop in ["x-answer-hop", "x-answer-hop-2"] {
        assert!(
            values(&answer.head, hop).is_empty(),
            "{hop} reached the caller: {}",
            answer.head
        );
    }
}

#[actix_web::test]
async fn every_value_of_a_repeated_header_is_forwarded_both_ways() {
    let upstream = RawUpstream::start(
        "Content-Type: application/json\r\nX-Answer-Repeat: one\r\nX-Answer-Repeat: two\r\n\
         Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n",
        WECOM_ANSWER,
    );
    let app = spawn("", Some(&upstream)).await;
    let answer = raw_get(
        &app,
        "/v1/apps/corp/proxy/cgi-bin/user/get",
        &[
            "Connection: close",
            "X-Caller-Repeat: first",
            "Accept: application/json",
            "X-Caller-Repeat: second",
            "X-Caller-Repeat: third",
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.head);
    let sent = forwarded_head(&upstream, "/cgi-bin/user/get");
    assert_eq!(
        values(&sent, "x-caller-repeat"),
        ["first", "second", "third"],
        "{sent}"
    );
    assert_eq!(
        values(&answer.head, "x-answer-repeat"),
        ["one", "two"],
        "{}",
        answer.head
    );
    assert_eq!(values(&answer.head, "set-cookie"), ["a=1", "b=2"]);
}

/// A multipart/form-data body with one `media` file part, as SDKs upload media.
fn multipart(file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "wxtoken-wire-boundary-2b9e41";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"media\"; filename=\"m.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// `len` bytes that are not one repeated byte: a shifted or truncated copy would not compare
/// equal.
fn media(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// The gateway sends a body in slices of its buffer: the slices must arrive in order, as one
/// body with its length (not re-chunked), the first time and again when the call is repeated.
#[actix_web::test]
async fn a_chunked_upload_reaches_wechat_with_its_length_and_is_replayed_intact() {
    let app = spawn("", None).await;
    let old = app.shop_token().await;
    rotate_behind_wxtoken(&app.fake).await;
    // Not a multiple of any slice size, arriving in pieces of yet another size.
    let file = media(3 * 1024 * 1024 + 12_345);
    let (content_type, body) = multipart(&file);
    let pieces: Vec<Bytes> = body.chunks(100_003).map(Bytes::copy_from_slice).collect();
    let mut resp = app
        .http
        .post(format!(
            "{}/cgi-bin/media/upload?access_token={old}&type=image",
            app.base
        ))
        .insert_header(("content-type", content_type))
        .send_stream(futures_util::stream::iter(
            pieces.into_iter().map(Ok::<_, std::io::Error>),
        ))
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let answer: Value = serde_json::from_slice(&resp.body().await.expect("body")).unwrap();
    let media_id = answer["media_id"].as_str().expect("a media_id");
    let (stored, _) = app.fake.media(media_id).expect("stored");
    assert!(stored == file, "the upload arrived byte for byte");
    let reqs = app.fake.api_requests("/cgi-bin/media/upload");
    assert_eq!(reqs.len(), 2, "rejected once, then repeated");
    let length = body.len().to_string();
    for r in &reqs {
        assert!(r.body == body, "each attempt carries the whole body");
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_eq!(r.header("transfer-encoding"), None);
    }
}

/// A client that announces 8 MiB, sends 1 MiB and goes away: its slot (and the buffer, which
/// lives no longer) comes back at once, not at the body deadline (30 s here), and the one slot
/// serves the next upload.
#[actix_web::test]
async fn an_abandoned_upload_gives_back_its_slot_at_once() {
    let app = spawn("max_concurrent = 1\ntimeout_secs = 30", None).await;
    app.shop_token().await;
    let addr = app.base.trim_start_matches("http://").parse().unwrap();
    let path = "/v1/apps/shop/proxy/cgi-bin/media/upload?type=image";
    let (content_type, body) = multipart(&media(8 * 1024 * 1024));
    let mut partial = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {BACKEND_KEY}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    partial.extend_from_slice(&body[..1024 * 1024]);
    let conn = blocking(move || send(addr, &partial)).await;
    let state = app.state.clone();
    let reading = eventually(Duration::from_secs(5), || {
        let n = state.gateway.in_flight();
        async move { n == 1 }
    })
    .await;
    assert!(reading, "the upload never took its slot");
    drop(conn);
    let freed = eventually(Duration::from_secs(5), || {
        let n = state.gateway.in_flight();
        async move { n == 0 }
    })
    .await;
    assert!(freed, "the abandoned upload still holds its slot");
    assert_eq!(app.fake.api_calls("/cgi-bin/media/upload"), 0);
    assert_eq!(
        app.metric(r#"wxtoken_proxy_requests_total{app="shop",result="refused"}"#)
            .await,
        Some(1.0)
    );
    let mut resp = app
        .http
        .post(format!("{}{path}", app.base))
        .insert_header(("authorization", format!("Bearer {BACKEND_KEY}")))
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let answer: Value = serde_json::from_slice(&resp.body().await.expect("body")).unwrap();
    assert!(answer["media_id"].is_string(), "{answer}");
    assert_eq!(app.state.gateway.in_flight(), 0);
}

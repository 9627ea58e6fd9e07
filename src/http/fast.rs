//! The token read path, kept lean: it is the request every business server makes, so it should
//! cost little more than `/healthz`.
//!
//! The JSON body is rendered once per token (everything but `expires_in`, which changes every
//! second) and kept beside the app; a request only splices in the seconds left. `Cache-Control`
//! values come from a table instead of being formatted each time.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpResponse;

use super::MAX_CLIENT_CACHE_SECS;
use crate::token::TokenRecord;

/// A token's answer, rendered but for `expires_in`.
pub struct RenderedToken {
    /// The record it was rendered from (compared by pointer: one render per record).
    record: Arc<TokenRecord>,
    /// `{"app":"shop","access_token":"...","expires_in":`
    prefix: String,
    /// `,"expires_at":"2026-11-25T15:00:00Z"}`
    suffix: String,
}

impl RenderedToken {
    pub fn new(app: &str, record: Arc<TokenRecord>) -> Self {
        let json = |v: &str| serde_json::to_string(v).expect("strings always serialize");
        let expires_at = record.expires_at_rfc3339();
        RenderedToken {
            prefix: format!(
                "{{\"app\":{},\"access_token\":{},\"expires_in\":",
                json(app),
                json(record.token.expose())
            ),
            suffix: format!(",\"expires_at\":{}}}", json(&expires_at)),
            record,
        }
    }

    pub fn is_for(&self, record: &Arc<TokenRecord>) -> bool {
        Arc::ptr_eq(&self.record, record)
    }

    /// The whole body for `expires_in` seconds left.
    pub fn body(&self, expires_in: u64) -> String {
        let digits = Digits::of(expires_in);
        let digits = digits.as_str();
        let mut out = String::with_capacity(self.prefix.len() + digits.len() + self.suffix.len());
        out.push_str(&self.prefix);
        out.push_str(digits);
        out.push_str(&self.suffix);
        out
    }
}

/// A number's decimal digits without a heap allocation.
struct Digits([u8; 20], usize);

impl Digits {
    fn of(mut n: u64) -> Digits {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        Digits(buf, i)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[self.1..]).expect("ASCII digits")
    }
}

/// `private, max-age=N` for N = 0..=60.
static CACHE_CONTROL: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    (0..=MAX_CLIENT_CACHE_SECS)
        .map(|n| {
            HeaderValue::from_str(&format!("private, max-age={n}")).expect("ASCII header value")
        })
        .collect()
});

/// The `Cache-Control` value for an answer whose credential expires in `expires_in` seconds.
pub fn cache_control_value(expires_in: u64) -> HeaderValue {
    CACHE_CONTROL[expires_in.min(MAX_CLIENT_CACHE_SECS) as usize].clone()
}

/// The 200 answer for `record`, rendering it into `cache` if it is not there yet.
pub fn token_answer(
    app: &str,
    record: &Arc<TokenRecord>,
    cache: &arc_swap::ArcSwapOption<RenderedToken>,
    now: SystemTime,
) -> HttpResponse {
    let rendered = match &*cache.load() {
        Some(r) if r.is_for(record) => r.clone(),
        _ => {
            let r = Arc::new(RenderedToken::new(app, record.clone()));
            cache.store(Some(r.clone()));
            r
        }
    };
    let expires_in = record.remaining(now).as_secs();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, cache_control_value(expires_in)))
        .content_type(mime_json())
        .body(rendered.body(expires_in))
}

fn mime_json() -> HeaderValue {
    HeaderValue::from_static("application/json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::AccessToken;
    use std::time::Duration;

    #[test]
    fn rendered_body_is_the_serde_body() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let record = Arc::new(TokenRecord {
            appid: "wx".into(),
            token: AccessToken::new("tok\"en\\"),
            fetched_at: now,
            expires_at: now + Duration::from_secs(7200),
            generation: 1,
        });
        let r = RenderedToken::new("sh\"op", record.clone());
        for left in [0u64, 7, 60, 7199, u64::MAX] {
            // The body `token_response` would send through serde for the same record: the fast
            // path must match it byte for byte (field order, escaping, digits).
            let serde_body = serde_json::to_string(&crate::http::TokenBody {
                app: "sh\"op",
                access_token: record.token.expose(),
                expires_in: left,
                expires_at: record.expires_at_rfc3339(),
                refreshed: None,
            })
            .unwrap();
            assert_eq!(r.body(left), serde_body);
        }
        assert!(r.is_for(&record));
        assert!(!r.is_for(&Arc::new((*record).clone())));
    }

    #[test]
    fn cache_control_is_capped_at_a_minute() {
        assert_eq!(cache_control_value(0), "private, max-age=0");
        assert_eq!(cache_control_value(42), "private, max-age=42");
        assert_eq!(cache_control_value(7000), "private, max-age=60");
    }
}

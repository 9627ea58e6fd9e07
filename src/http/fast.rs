//! The token read path, kept lean: it is the request every business server makes, so it should
//! cost little more than `/healthz`.
//!
//! The JSON body is rendered once per token (everything but `expires_in`, which changes every
//! second) and kept in the HTTP layer's [`RenderCache`]; a request only splices in the seconds
//! left. `Cache-Control` values come from a table instead of being formatted each time.

use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use actix_web::http::header::{self, HeaderValue};
use actix_web::HttpResponse;
use arc_swap::ArcSwapOption;

use super::MAX_CLIENT_CACHE_SECS;
use crate::token::TokenRecord;

/// A token's answer, rendered but for `expires_in`.
pub struct RenderedToken {
    /// The record it was rendered from (compared by pointer: one render per record).
    record: Arc<TokenRecord>,
    /// The app it answers for.
    app: Box<str>,
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
            app: app.into(),
        }
    }

    pub fn is_for(&self, record: &Arc<TokenRecord>) -> bool {
        Arc::ptr_eq(&self.record, record)
    }

    fn answers(&self, app: &str, record: &Arc<TokenRecord>) -> bool {
        self.is_for(record) && &*self.app == app
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

/// Fewest and most slots of a [`RenderCache`]: 8 KiB to 8 MiB of pointers.
const MIN_SLOTS: usize = 1 << 10;
const MAX_SLOTS: usize = 1 << 20;

/// The rendered answers of the tokens served lately.
///
/// Direct-mapped, so it costs neither a lock nor a hash per request: each record has one slot,
/// chosen by its address. A record is one token of one credential, and the slot's answer holds
/// it, so while it is cached its address names nothing else. Two hot records that share a slot
/// take turns and are rendered again on each switch: that costs what the serde path costs, and
/// with twice as many slots as apps at start-up it is rare. What a slot holds stays until a
/// record of the same slot replaces it, so a removed app's answer costs one slot at most.
pub struct RenderCache {
    slots: Box<[ArcSwapOption<RenderedToken>]>,
    /// 64 minus log2 of the slot count: the top bits of the address's hash pick the slot.
    shift: u32,
}

impl RenderCache {
    /// A cache for about `apps` credentials.
    pub fn new(apps: usize) -> RenderCache {
        let n = apps
            .saturating_mul(2)
            .clamp(MIN_SLOTS, MAX_SLOTS)
            .next_power_of_two();
        RenderCache {
            slots: (0..n).map(|_| ArcSwapOption::empty()).collect(),
            shift: 64 - n.trailing_zeros(),
        }
    }

    fn slot(&self, record: &Arc<TokenRecord>) -> &ArcSwapOption<RenderedToken> {
        // Fibonacci hashing: allocations are aligned, so the address's low bits say little and
        // its high bits are the same for every record; the product's top bits mix them all.
        let addr = Arc::as_ptr(record) as usize as u64;
        &self.slots[(addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize]
    }

    /// The answer of `app` for `record`, rendered now if its slot holds another one.
    pub fn get(&self, app: &str, record: &Arc<TokenRecord>) -> Arc<RenderedToken> {
        let slot = self.slot(record);
        match &*slot.load() {
            Some(r) if r.answers(app, record) => r.clone(),
            _ => {
                let r = Arc::new(RenderedToken::new(app, record.clone()));
                slot.store(Some(r.clone()));
                r
            }
        }
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
    cache: &RenderCache,
    now: SystemTime,
) -> HttpResponse {
    let rendered = cache.get(app, record);
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
    fn a_cached_answer_serves_its_own_record_and_app_only() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let record = |token: &str| {
            Arc::new(TokenRecord {
                appid: "wx".into(),
                token: AccessToken::new(token),
                fetched_at: now,
                expires_at: now + Duration::from_secs(7200),
                generation: 1,
            })
        };
        let cache = RenderCache::new(1);
        let first = record("first");
        let rendered = cache.get("shop", &first);
        assert!(
            Arc::ptr_eq(&rendered, &cache.get("shop", &first)),
            "rendered once"
        );
        assert!(cache
            .get("other", &first)
            .body(1)
            .contains("\"app\":\"other\""));
        let second = record("second");
        assert!(cache
            .get("shop", &second)
            .body(1)
            .contains("\"access_token\":\"second\""));
        assert!(cache
            .get("shop", &first)
            .body(1)
            .contains("\"access_token\":\"first\""));
    }

    #[test]
    fn cache_control_is_capped_at_a_minute() {
        assert_eq!(cache_control_value(0), "private, max-age=0");
        assert_eq!(cache_control_value(42), "private, max-age=42");
        assert_eq!(cache_control_value(7000), "private, max-age=60");
    }
}

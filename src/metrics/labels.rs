//! The fixed label values of the metrics: the route templates, the store operations and the
//! upstream error reasons, errcodes included. (What started a refresh and how a report ended
//! are the token domain's words: `crate::status`.)

use crate::upstream::UpstreamError;

/// Upstream error reasons that are not errcodes; created at 0 so rate() has a baseline.
pub const FIXED_REASONS: [&str; 4] = ["timeout", "connect", "http", "decode"];

/// The errcodes that keep their own `reason` label: those the project's classification
/// (`classify_errcode`) and API notes name. Any other errcode is counted as [`OTHER_REASON`],
/// so WeChat (or a broken proxy) inventing codes cannot grow the label set.
pub const KNOWN_ERRCODES: [(i64, &str); 19] = [
    (-1, "-1"),
    (40001, "40001"),
    (40002, "40002"),
    (40013, "40013"),
    (40014, "40014"),
    (40125, "40125"),
    (40164, "40164"),
    (40243, "40243"),
    (41001, "41001"),
    (42001, "42001"),
    (45009, "45009"),
    (45011, "45011"),
    (48001, "48001"),
    (60020, "60020"),
    (61004, "61004"),
    (89501, "89501"),
    (89503, "89503"),
    (89506, "89506"),
    (89507, "89507"),
];

/// The `reason` of an errcode outside [`KNOWN_ERRCODES`].
pub const OTHER_REASON: &str = "other";

/// The bounded `reason` label of `err`: a known errcode, `other` for any other errcode, or
/// timeout/connect/http/decode/no_token. (`store`, the reason a refresh the shared store could
/// not coordinate publishes, is counted by `wxtoken_store_errors_total{op="lock"}` instead.)
pub fn reason_label(err: &UpstreamError) -> &'static str {
    match err {
        UpstreamError::Api { errcode, .. } => KNOWN_ERRCODES
            .iter()
            .find(|(code, _)| code == errcode)
            .map_or(OTHER_REASON, |(_, label)| label),
        UpstreamError::Timeout(_) => "timeout",
        UpstreamError::Connect(_) => "connect",
        UpstreamError::Http(_) => "http",
        UpstreamError::Decode(_) => "decode",
        UpstreamError::NoToken => "no_token",
    }
}

/// Operations on the token store (label `op` of `wxtoken_store_errors_total`) whose series
/// exist from start: `decrypt` counts stored records whose sealed secret does not open.
pub const STORE_OPS: [&str; 4] = ["load", "save", "lock", "decrypt"];

/// Routes of the HTTP API as matched templates (label `route`); anything else is `unmatched`.
pub const ROUTES: [&str; 42] = [
    "/v1/apps/{name}/token",
    "/v1/apps/{name}/token/invalidate",
    "/v1/apps/{name}/ticket/{type}",
    "/v1/apps/{name}/jssdk/signature",
    "/v1/apps/{name}/revoke",
    "/v1/apps/{name}/proxy/{path:.*}",
    "/v1/admin/reload",
    "/v1/platforms/{name}/events",
    "/v1/platforms/{name}/component_token",
    "/v1/platforms/{name}/authorizers",
    "/v1/platforms/{name}/authorizers/{appid}",
    "/v1/platforms/{name}/authorizers/{appid}/token",
    "/v1/platforms/{name}/authorizers/{appid}/token/invalidate",
    "/v1/platforms/{name}/authorizers/{appid}/ticket/{type}",
    "/v1/platforms/{name}/authorizers/{appid}/jssdk/signature",
    "/v1/platforms/{name}/authorizers/{appid}/proxy/{path:.*}",
    "/v1/platforms/{name}/proxy/{path:.*}",
    "/v1/platforms/{name}/preauth",
    "/v1/admin/platforms/{name}/reconcile",
    "/v1/wecom/suites/{name}/events",
    "/v1/wecom/suites/{name}/suite_token",
    "/v1/wecom/suites/{name}/corps",
    "/v1/wecom/suites/{name}/corps/{corpid}",
    "/v1/wecom/suites/{name}/corps/{corpid}/token",
    "/v1/wecom/suites/{name}/corps/{corpid}/token/invalidate",
    "/v1/wecom/suites/{name}/corps/{corpid}/ticket/{type}",
    "/v1/wecom/suites/{name}/corps/{corpid}/jssdk/signature",
    "/v1/wecom/suites/{name}/preauth",
    "/v1/wecom/providers/{name}/token",
    "/v1/admin/deliveries",
    "/v1/admin/deliveries/{id}",
    "/v1/admin/deliveries/{id}/retry",
    "/v1/admin/pushes/unmatched",
    "/cgi-bin/token",
    "/cgi-bin/stable_token",
    "/cgi-bin/component/api_component_token",
    "/cgi-bin/component/api_authorizer_token",
    "/cgi-bin/component/api_query_auth",
    "/{prefix}/{path:.*}",
    "/healthz",
    "/readyz",
    "/metrics",
];

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::upstream::{classify_errcode, ErrorClass};

    fn api(errcode: i64) -> UpstreamError {
        UpstreamError::Api {
            errcode,
            errmsg: "x".into(),
        }
    }

    #[test]
    fn known_errcodes_keep_their_label_and_others_fold_into_other() {
        for (code, label) in KNOWN_ERRCODES {
            assert_eq!(reason_label(&api(code)), label);
            assert_eq!(label, code.to_string());
        }
        for code in [0, 1, 40003, 99999, -2, i64::MAX, i64::MIN] {
            assert_eq!(reason_label(&api(code)), OTHER_REASON, "{code}");
        }
        // The other reasons are the ones `UpstreamError` itself names.
        for err in [
            UpstreamError::Timeout(Duration::from_secs(1)),
            UpstreamError::Connect("refused".into()),
            UpstreamError::Http(502),
            UpstreamError::Decode("html".into()),
            UpstreamError::NoToken,
        ] {
            assert_eq!(reason_label(&err), err.reason());
        }
    }

    /// A code the classification treats specially but this list forgot would be hidden in
    /// `other`, exactly where an operator needs to see it.
    #[test]
    fn every_errcode_the_classification_names_is_known() {
        for code in -100_000..=100_000 {
            if classify_errcode(code) != ErrorClass::Transient {
                assert!(
                    KNOWN_ERRCODES.iter().any(|(c, _)| *c == code),
                    "{code} is classified but folds into `other`"
                );
            }
        }
    }
}

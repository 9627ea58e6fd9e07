//! A suite's series on `/metrics`: its ticket's age, its corps by state, its callbacks by
//! InfoType and result, and its suite, corp, corp ticket and provider tokens in the
//! per-credential families; no ticket, token or permanent code among them.

use crate::support::helpers::*;
use crate::support::wecom::*;

#[actix_web::test]
async fn a_suite_shows_its_ticket_age_corps_callbacks_and_tokens() {
    let app = start_wecom("active").await;
    app.suite_ready(SUITE, SUITE_ID).await;
    let corp = "wwcorp00000000040";
    let token = app.install(SUITE, SUITE_ID, corp).await;
    let path = format!("/v1/wecom/suites/{SUITE}/corps/{corp}/ticket/jsapi");
    let ticket = app.get(&path, Some(KEY)).await;
    assert_eq!(ticket.status, 200, "{}", ticket.body);
    let provider = app
        .get(&format!("/v1/wecom/providers/{PROVIDER}/token"), Some(KEY))
        .await;
    assert_eq!(provider.status, 200, "{}", provider.body);
    let text = app.metrics_text().await;
    let age = sample(
        &text,
        &format!(r#"wxtoken_wecom_suite_ticket_age_seconds{{suite="{SUITE}"}}"#),
    );
    assert!(age.is_some_and(|a| (0.0..60.0).contains(&a)), "{age:?}");
    let corps = |state: &str| {
        sample(
            &text,
            &format!(r#"wxtoken_wecom_corps{{state="{state}",suite="{SUITE}"}}"#),
        )
    };
    assert_eq!(corps("active"), Some(1.0));
    assert_eq!(corps("needs_reauth"), Some(0.0));
    for info_type in ["suite_ticket", "create_auth"] {
        let callbacks = sample(
            &text,
            &format!(
                r#"wxtoken_wecom_callbacks_total{{info_type="{info_type}",result="ok",suite="{SUITE}"}}"#
            ),
        );
        assert!(
            callbacks.is_some_and(|n| n >= 1.0),
            "{info_type}: {callbacks:?}"
        );
    }
    for label in [
        format!("wecom:{SUITE}"),
        format!("wecom:{SUITE}:corps"),
        format!("wecom:{SUITE}:corps:jsapi_ticket"),
        format!("wecom-provider:{PROVIDER}"),
    ] {
        let fetched = text
            .lines()
            .filter(|l| {
                l.starts_with("wxtoken_token_refreshes_total{")
                    && l.contains(&format!("app=\"{label}\""))
            })
            .count();
        assert!(fetched > 0, "{label}: no refresh series");
    }
    for secret in [
        token,
        ticket.body["ticket"].as_str().unwrap().to_string(),
        app.fake.permanent_code(SUITE_ID, corp).unwrap(),
        app.fake.current_suite_ticket(SUITE_ID).unwrap(),
    ] {
        assert!(!text.contains(&secret), "a secret on /metrics");
    }
}

//! WeChat's release check (全网发布) against a platform: wxtoken answers it for the test accounts
//! by itself, as WeChat's own sequence (in the fake) checks.

use std::time::Duration;

use wxtoken::fake::messages::ReleaseCheck;
use wxtoken::fake::FakeConfig;

use crate::support::helpers::*;
use crate::support::messages::account_target;
use crate::support::platform::{platform_table, start_with_platform, COMPONENT, PLATFORM};

/// The first of WeChat's test Official Accounts, and its original id.
const TEST_APPID: &str = "wx570bc396a51b8ff8";
const TEST_USERNAME: &str = "gh_3c884a361561";

async fn platform_app(release_check: bool) -> TestApp {
    let table = format!("{}release_check = {release_check}\n", platform_table());
    let config = ConfigText::new()
        .raw(&table)
        .client(Client::new("crm", "crm-key-000000000000000001").platforms(&[PLATFORM]));
    let app = start_with_platform(
        FakeConfig::default(),
        TestApp::builder().config(&config.to_string()),
    )
    .await;
    app.push_ticket().await;
    app
}

/// WeChat's release check run against a server with `release_check` as given, the test
/// account authorized at the fake (WeChat hands the check one of its authorization codes),
/// waiting up to `wait` for the customer-service message.
async fn release_check(release_check: bool, wait: Duration) -> ReleaseCheck {
    let app = platform_app(release_check).await;
    let authorized = app
        .fake
        .authorize(COMPONENT, TEST_APPID, &[1], None)
        .expect("test account authorized at the fake");
    let target = account_target(&app.base, TEST_APPID);
    app.fake
        .run_release_check(&target, TEST_USERNAME, &authorized.authorization_code, wait)
        .await
}

#[actix_web::test]
async fn the_release_check_passes_for_a_test_account() {
    let check = release_check(true, Duration::from_secs(10)).await;
    assert!(check.passed(), "{check:?}");
}

#[actix_web::test]
async fn with_the_check_off_a_test_account_is_an_account_like_any_other() {
    let check = release_check(false, Duration::from_millis(300)).await;
    assert!(!check.text_replied && !check.event_replied, "{check:?}");
    assert!(!check.api_message_sent, "{check:?}");
}

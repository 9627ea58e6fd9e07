//! The label of each credential: the `app` value of its metrics, and the name its logs and
//! readiness use. Every form is made here, so they cannot drift apart, and validation checks
//! them against each other (a ticket's label may not be a platform's).
//!
//! - an app's token: the app's name, `shop` (app names cannot hold `:` or `/`);
//! - an app's ticket: `shop:jsapi_ticket`;
//! - a platform's component token: `platform:saas`;
//! - a platform's authorizers, one label for all of them: `platform:saas:authorizers`, and
//!   their tickets by kind: `platform:saas:authorizers:jsapi_ticket`;
//! - a WeCom suite's token `wecom:crm-suite`, its corps' `wecom:crm-suite:corps`, a WeCom
//!   corps' tickets `wecom:crm-suite:corps:jsapi_ticket`, a WeCom provider's token
//!   `wecom-provider:vendor`.

use super::TicketKind;

/// The label of app `app`'s ticket of `kind`: `shop:jsapi_ticket`.
pub fn ticket_label(app: &str, kind: TicketKind) -> String {
    ticket_of(app, kind.as_str())
}

/// The label of platform `name`'s component token (and of its series in the store metrics):
/// `platform:saas`. App names cannot hold `:`, so it never equals an app's label; validation
/// checks it against ticket labels, which can.
pub fn platform_label(name: &str) -> String {
    format!("platform:{name}")
}

/// The label every authorizer actor of `platform` shares: one series per platform, not per
/// account.
pub fn authorizer_label(platform: &str) -> String {
    format!("platform:{platform}:authorizers")
}

/// The label every authorizer ticket actor of `platform` and `kind` shares.
pub fn authorizer_ticket_label(platform: &str, kind: TicketKind) -> String {
    ticket_of(&authorizer_label(platform), kind.as_str())
}

/// The label of WeCom suite `name`'s suite token: `wecom:crm-suite`.
pub fn wecom_suite_label(name: &str) -> String {
    format!("wecom:{name}")
}

/// The label every corp token actor of WeCom suite `suite` shares: `wecom:crm-suite:corps`.
pub fn wecom_corps_label(suite: &str) -> String {
    format!("wecom:{suite}:corps")
}

/// The label every corp ticket actor of WeCom suite `suite` and `kind` shares:
/// `wecom:crm-suite:corps:agent_jsapi_ticket`.
pub fn wecom_corp_ticket_label(suite: &str, kind: TicketKind) -> String {
    ticket_of(&wecom_corps_label(suite), kind.as_str())
}

/// The label of WeCom provider `name`'s provider token: `wecom-provider:vendor`.
pub fn wecom_provider_label(name: &str) -> String {
    format!("wecom-provider:{name}")
}

/// Where WeCom suite `name`'s durable records live among the platforms' (`wecom.crm-suite`):
/// a suite's records are a platform's, with a name no configured platform has.
pub fn wecom_store_namespace(name: &str) -> String {
    format!("wecom.{name}")
}

/// The label of the credential stored under `key_name`: the app's name, or its ticket's label
/// for a ticket's key (`shop/ticket/jsapi`).
pub fn store_key_label(key_name: &str) -> String {
    match key_name.split_once("/ticket/") {
        Some((app, kind)) => ticket_of(app, kind),
        None => key_name.to_string(),
    }
}

/// A ticket's label: its token's label and its `getticket` type.
fn ticket_of(token_label: &str, kind: &str) -> String {
    format!("{token_label}:{kind}_ticket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_credential_has_its_own_form() {
        assert_eq!(ticket_label("shop", TicketKind::Jsapi), "shop:jsapi_ticket");
        assert_eq!(platform_label("saas"), "platform:saas");
        assert_eq!(authorizer_label("saas"), "platform:saas:authorizers");
        assert_eq!(
            authorizer_ticket_label("saas", TicketKind::WxCard),
            "platform:saas:authorizers:wx_card_ticket"
        );
        assert_eq!(store_key_label("shop/ticket/jsapi"), "shop:jsapi_ticket");
        assert_eq!(store_key_label("shop"), "shop");
        assert_eq!(
            wecom_corp_ticket_label("crm", TicketKind::AgentJsapi),
            "wecom:crm:corps:agent_jsapi_ticket"
        );
    }
}

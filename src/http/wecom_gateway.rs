//! The gateway's side of WeCom service providers: which credential a call made with a suite,
//! corp or provider token wxtoken issued is forwarded with. Such calls go to `[upstream]
//! wecom_base_url` with the credential's current token, in the parameter WeCom reads it from
//! (`suite_access_token`, `provider_access_token`, or `access_token` for a corp), and the
//! answers of suite and provider calls are checked for permanent codes.

use super::gateway::{refusal, single_param, Refusal};
use super::ServerState;
use crate::proxy::{AnswerRule, Target};
use crate::token::index::TokenOwner;

/// The query parameters WeCom's service-provider calls carry their token in.
pub(super) const SUITE_TOKEN: &str = "suite_access_token";
pub(super) const PROVIDER_TOKEN: &str = "provider_access_token";

/// The running credential of a WeCom token in the index, if it still runs.
pub(super) fn target_of(state: &ServerState, owner: &TokenOwner) -> Option<Target> {
    match owner {
        TokenOwner::WecomSuite(name) => {
            let suite = state.wecom_suites.get(name)?;
            Some(Target {
                label: suite.label(),
                wecom: true,
                param: SUITE_TOKEN,
                credential: suite.suite_token_credential(),
            })
        }
        TokenOwner::WecomCorp { suite, corpid } => corp_target(state, suite, corpid),
        TokenOwner::WecomProvider(name) => {
            let provider = state.wecom_providers.get(name)?;
            Some(Target {
                label: provider.label(),
                wecom: true,
                param: PROVIDER_TOKEN,
                credential: provider.credential(),
            })
        }
        TokenOwner::App(_) | TokenOwner::Authorizer { .. } => None,
    }
}

/// A corp's token as the credential of a forwarded call (its actor started if need be); none
/// for a corp whose token may not be served (unknown, uninstalled, to install again).
pub(super) fn corp_target(state: &ServerState, suite: &str, corpid: &str) -> Option<Target> {
    let s = state.wecom_suites.get(suite)?;
    Some(corp_target_of(s, s.corp_actor(corpid).ok()?))
}

/// A corp's token actor as the credential of a forwarded call: WeCom's host, `access_token`.
pub(super) fn corp_target_of(
    suite: &crate::wecom::Suite,
    credential: crate::token::CredentialHandle,
) -> Target {
    Target {
        label: crate::config::labels::wecom_corps_label(suite.name()),
        wecom: true,
        param: "access_token",
        credential,
    }
}

/// What a forwarded answer made with `target` may not carry: a suite or provider call's answer
/// is checked for permanent codes.
pub(super) fn answer_rule(target: &Target, rule: AnswerRule) -> AnswerRule {
    match (target.param, rule) {
        (SUITE_TOKEN | PROVIDER_TOKEN, AnswerRule::AsIs) => AnswerRule::NoPermanentCodes,
        (_, rule) => rule,
    }
}

/// The credential of a call that carries a suite or provider token (`None` when it carries
/// neither); WeCom's refusal when the token is not one wxtoken issued for that kind (40082 for
/// a suite token, 40014 for a provider token) or the call carries more than one.
pub(super) fn service_target(
    state: &ServerState,
    raw_query: &str,
    carries_access_token: bool,
) -> Result<Option<Target>, Refusal> {
    let suite = single_param(raw_query, SUITE_TOKEN)?;
    let provider = single_param(raw_query, PROVIDER_TOKEN)?;
    let (token, param, errcode) = match (suite, provider) {
        (None, None) => return Ok(None),
        (Some(t), None) => (t, SUITE_TOKEN, 40082),
        (None, Some(t)) => (t, PROVIDER_TOKEN, 40014),
        (Some(_), Some(_)) => return Err(one_token()),
    };
    if carries_access_token {
        return Err(one_token());
    }
    let target = state
        .tokens
        .lookup(&token)
        .and_then(|i| target_of(state, &i.owner))
        .filter(|t| t.param == param)
        .ok_or_else(|| {
            refusal(
                errcode,
                format!("invalid {param}: not a token wxtoken issued as {param}"),
            )
        })?;
    Ok(Some(target))
}

fn one_token() -> Refusal {
    refusal(
        40097,
        "invalid args: a call carries one token (access_token, suite_access_token or \
         provider_access_token)",
    )
}

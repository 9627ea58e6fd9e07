//! The state of one credential as `wxtoken_credentials{state}` counts it, read from what its
//! actor last published.
//!
//! Each credential is in exactly one state, checked in this order:
//! - `no_token`: it has never had a token (none fetched, none found in the store);
//! - `expired`: it has one, but with less than a second left, so it is not served;
//! - `failing`: its token is served, and the last fetch (or store coordination) failed;
//! - `refreshing`: its token is served and its proactive refresh is due (the due time has
//!   passed) without a failure yet: a refresh is in flight or about to start;
//! - `valid`: its token is served and no refresh is due yet.

use std::time::SystemTime;

use crate::status::AppStatus;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialState {
    Valid,
    Refreshing,
    Failing,
    Expired,
    NoToken,
}

impl CredentialState {
    pub const ALL: [CredentialState; 5] = [
        CredentialState::Valid,
        CredentialState::Refreshing,
        CredentialState::Failing,
        CredentialState::Expired,
        CredentialState::NoToken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialState::Valid => "valid",
            CredentialState::Refreshing => "refreshing",
            CredentialState::Failing => "failing",
            CredentialState::Expired => "expired",
            CredentialState::NoToken => "no_token",
        }
    }

    /// Position in [`CredentialState::ALL`], for counting without a map.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The state of `status` at `now`.
    pub fn of(status: &AppStatus, now: SystemTime) -> CredentialState {
        match &status.token {
            None => CredentialState::NoToken,
            Some(t) if !t.is_valid_at(now) => CredentialState::Expired,
            Some(_) if status.last_failure.is_some() => CredentialState::Failing,
            // A token with no refresh scheduled counts as due: nothing will renew it.
            Some(_) if status.refresh_due.is_none_or(|due| due <= now) => {
                CredentialState::Refreshing
            }
            Some(_) => CredentialState::Valid,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::secret::AccessToken;
    use crate::status::{FailureInfo, TokenRecord};
    use crate::upstream::ErrorClass;

    const NOW: u64 = 1_750_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn token(expires: u64, due: Option<u64>) -> AppStatus {
        AppStatus {
            token: Some(Arc::new(TokenRecord {
                appid: "wx1".into(),
                token: AccessToken::new("t"),
                fetched_at: at(NOW - 100),
                expires_at: at(expires),
                generation: 1,
            })),
            refresh_due: due.map(at),
            ..AppStatus::default()
        }
    }

    fn failed(mut s: AppStatus) -> AppStatus {
        s.last_failure = Some(Arc::new(FailureInfo {
            errcode: Some(-1),
            reason: "-1".into(),
            class: ErrorClass::Transient,
            message: "system busy".into(),
        }));
        s
    }

    #[test]
    fn each_status_is_in_exactly_the_state_its_definition_names() {
        let now = at(NOW);
        let state = |s: &AppStatus| CredentialState::of(s, now);
        assert_eq!(state(&AppStatus::default()), CredentialState::NoToken);
        assert_eq!(
            state(&failed(AppStatus::default())),
            CredentialState::NoToken
        );
        assert_eq!(
            state(&token(NOW + 7000, Some(NOW + 6000))),
            CredentialState::Valid
        );
        assert_eq!(
            state(&token(NOW + 500, Some(NOW - 10))),
            CredentialState::Refreshing
        );
        // Due exactly now is due.
        assert_eq!(
            state(&token(NOW + 500, Some(NOW))),
            CredentialState::Refreshing
        );
        assert_eq!(state(&token(NOW + 500, None)), CredentialState::Refreshing);
        assert_eq!(
            state(&failed(token(NOW + 500, Some(NOW - 10)))),
            CredentialState::Failing
        );
        // A failed invalidation with the scheduled refresh still ahead is failing too.
        assert_eq!(
            state(&failed(token(NOW + 7000, Some(NOW + 6000)))),
            CredentialState::Failing
        );
        // Under a second left is not served: expired, failure or not.
        assert_eq!(
            state(&token(NOW, Some(NOW - 600))),
            CredentialState::Expired
        );
        assert_eq!(
            state(&failed(token(NOW - 5, Some(NOW - 600)))),
            CredentialState::Expired
        );
        for (i, s) in CredentialState::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
    }
}

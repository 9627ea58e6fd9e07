//! The token domain: what each credential's actor does to keep its token fresh, and the actor
//! itself.

pub mod actor;
#[cfg(test)]
mod actor_tests;
pub mod clock;
mod confirm;
mod credential;
pub mod external;
pub mod fetch;
mod guard;
pub mod handle;
mod handlers;
pub mod index;
pub mod messages;
pub mod schedule;
pub mod spawn;
pub mod spec;
mod sync;

pub use crate::secret::{AccessToken, Fingerprint};
// The data an actor publishes and keeps, and the words for what happens to it, live below the
// store and the metrics (which use them too); the token domain names them as its own.
pub use crate::status::{
    AppStatus, FailureInfo, InvalidationOutcome, QuotaUsage, RefetchRefusal, SharedStatus,
    TokenRecord, Trigger,
};
pub use actor::TokenActor;
pub use clock::SharedClock;
pub use credential::rejects_token;
pub use handle::{CredentialHandle, Unavailable, ACTOR_GRACE};
pub use spawn::{spawn_actor, spawn_sourced, spawn_ticket, ActorDeps};
pub use spec::CredentialSpec;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let t = AccessToken::new("very-secret-token-value");
        assert!(!format!("{t:?}").contains("very-secret"));
        assert!(!format!("{t}").contains("very-secret"));
        assert_eq!(format!("{t}").len(), 8);
        assert_ne!(
            AccessToken::new("a").fingerprint(),
            AccessToken::new("b").fingerprint()
        );
    }
}

//! A platform's line in `/readyz`: `ok`, or why its component token cannot be served; and
//! whether that makes the instance unready.

use std::time::SystemTime;

use super::runtime::Platform;

impl Platform {
    /// Its readiness line, and whether the instance is unready for it: only records the store
    /// could not save yet make it so (a restart now would lose a refresh token or the ticket),
    /// never a missing ticket (the first push has to reach this instance through the load
    /// balancer).
    pub fn readiness(&self, now: SystemTime) -> (String, bool) {
        let prefix = format!("{}/", self.name());
        let unsaved = self
            .store
            .not_durable_records()
            .into_iter()
            .filter(|k| k.starts_with(&prefix))
            .count();
        if unsaved > 0 {
            return (
                format!("{unsaved} records not saved yet (the store keeps retrying)"),
                true,
            );
        }
        (self.component_readiness(now), false)
    }

    fn component_readiness(&self, now: SystemTime) -> String {
        if let Some(token) = self.component_token(now) {
            // A success clears the last failure, so one still published means the refreshes
            // since this token was fetched have failed (61005/61006 during a ticket outage):
            // the token is served until it expires, and then the platform's accounts go with
            // it.
            return match &self.component_status().load().last_failure {
                Some(f) => format!(
                    "serving a component token with {} s left, but its refreshes fail: {}",
                    token.remaining(now).as_secs(),
                    f.message
                ),
                None => "ok".into(),
            };
        }
        if !self.has_ticket() {
            return "no component_verify_ticket pushed yet; WeChat pushes one about every 10 \
                    minutes to /v1/platforms/{name}/events"
                .replace("{name}", self.name());
        }
        match &self.component_status().load().last_failure {
            Some(f) => format!(
                "no valid component token: last fetch failed ({})",
                f.message
            ),
            None => "no valid component token yet: first fetch in progress".into(),
        }
    }
}

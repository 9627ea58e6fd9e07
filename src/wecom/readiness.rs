//! A suite's line in `/readyz`: `ok`, or why its suite token cannot be served; and whether that
//! makes the instance unready (only records the store could not save yet: a restart now would
//! lose the ticket or a permanent code; never a missing ticket, which the next push brings).

use std::time::SystemTime;

use super::runtime::Suite;

impl Suite {
    pub fn readiness(&self, now: SystemTime) -> (String, bool) {
        let unsaved = self.store.not_durable();
        if unsaved > 0 {
            return (
                format!("{unsaved} records not saved yet (the store keeps retrying)"),
                true,
            );
        }
        (self.suite_token_readiness(now), false)
    }

    fn suite_token_readiness(&self, now: SystemTime) -> String {
        let status = self.suite_token.status.load();
        let ticket = match self.ticket_age(now) {
            None => format!(
                "no suite_ticket pushed yet; WeCom pushes one every 10 minutes to \
                 /v1/wecom/suites/{}/events",
                self.name()
            ),
            Some(age) if !self.ticket_fresh(now) => format!(
                "the last suite_ticket is {} s old (WeCom honours it 30 minutes); is WeCom \
                 reaching /v1/wecom/suites/{}/events?",
                age.as_secs(),
                self.name()
            ),
            Some(_) => String::new(),
        };
        match (
            status.valid_token(now),
            ticket.is_empty(),
            &status.last_failure,
        ) {
            (Some(_), true, None) => "ok".into(),
            (Some(t), true, Some(f)) => format!(
                "serving a suite token with {} s left, but its refreshes fail: {}",
                t.remaining(now).as_secs(),
                f.message
            ),
            (Some(t), false, _) => format!(
                "serving a suite token with {} s left, but no new one can be minted: {ticket}",
                t.remaining(now).as_secs()
            ),
            (None, false, _) => format!("no valid suite token: {ticket}"),
            (None, true, Some(f)) => {
                format!("no valid suite token: last fetch failed ({})", f.message)
            }
            (None, true, None) => "no valid suite token yet: first fetch in progress".into(),
        }
    }
}

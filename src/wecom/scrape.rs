//! What a scrape reads of the running WeCom suites and providers: each suite's token, its corps'
//! and their tickets' shared labels (counters only: many actors share them, as a platform's
//! authorizers do), each provider's token, and the suites' ticket age and corps by state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::{Provider, Suite};
use crate::config::labels::{wecom_corp_ticket_label, wecom_corps_label};
use crate::config::TicketKind;
use crate::metrics::{ScrapedCredential, ScrapedPlatform};

/// The suites' and providers' credentials, as the per-credential families show them.
pub fn credentials(
    suites: &HashMap<String, Arc<Suite>>,
    providers: &HashMap<String, Arc<Provider>>,
) -> Vec<ScrapedCredential> {
    let shared = |label: String| ScrapedCredential {
        label,
        status: Arc::default(),
        daily_quota: 0,
        gauges: false,
    };
    let mut out = Vec::new();
    for s in suites.values() {
        out.push(ScrapedCredential {
            label: s.label(),
            status: s.suite_token_status().load_full(),
            daily_quota: 0,
            gauges: true,
        });
        out.push(shared(wecom_corps_label(s.name())));
        for kind in [TicketKind::CorpJsapi, TicketKind::AgentJsapi] {
            out.push(shared(wecom_corp_ticket_label(s.name(), kind)));
        }
    }
    for p in providers.values() {
        out.push(ScrapedCredential {
            label: p.label(),
            status: p.status().load_full(),
            daily_quota: 0,
            gauges: true,
        });
    }
    out
}

/// Each suite's ticket age and corps by state.
pub fn suites(suites: &HashMap<String, Arc<Suite>>) -> Vec<ScrapedPlatform> {
    let now = SystemTime::now();
    suites
        .values()
        .map(|s| {
            let age = s.ticket_age(now).map(|d| d.as_secs_f64());
            ScrapedPlatform::new(s.name(), age, s.corp_counts().by_state())
        })
        .collect()
}

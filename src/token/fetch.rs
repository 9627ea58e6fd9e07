//! What an actor asks upstream for, and the trait that answers it: WeChat in production, a
//! script in the actor's unit tests.

use std::sync::Arc;

use futures_util::future::LocalBoxFuture;

use super::spec::CredentialSpec;
use super::AccessToken;
use crate::config::{AppKind, Grant, TicketKind};
use crate::upstream::{Fetched, Priority, ProbeKind, Promotion, UpstreamError, WechatClient};

/// One upstream call for one credential. `priority`: its place in the upstream pool's queue;
/// `promotion`: how the actor moves it ahead if a caller starts waiting while it queues.
#[derive(Clone, Debug)]
pub enum FetchRequest {
    /// The app's access token. `force`: for the stable grant, invalidate the current token at
    /// once (spent from WeChat's daily budget of forced refreshes).
    AccessToken {
        spec: Arc<CredentialSpec>,
        force: bool,
        priority: Priority,
        promotion: Promotion,
    },
    /// A ticket, fetched with the app's current access token.
    Ticket {
        spec: Arc<CredentialSpec>,
        kind: TicketKind,
        token: AccessToken,
        priority: Priority,
        promotion: Promotion,
    },
}

impl FetchRequest {
    /// The `endpoint` label of the upstream latency histogram.
    pub fn endpoint(&self) -> &'static str {
        match self {
            FetchRequest::AccessToken { spec, .. } => match spec.kind {
                AppKind::Official(Grant::ClientCredential) => "token",
                AppKind::Official(Grant::Stable) => "stable_token",
                AppKind::Wecom => "wecom_token",
            },
            FetchRequest::Ticket { .. } => "ticket",
        }
    }

    pub fn priority(&self) -> Priority {
        match self {
            FetchRequest::AccessToken { priority, .. } | FetchRequest::Ticket { priority, .. } => {
                *priority
            }
        }
    }

    pub fn promotion(&self) -> &Promotion {
        match self {
            FetchRequest::AccessToken { promotion, .. }
            | FetchRequest::Ticket { promotion, .. } => promotion,
        }
    }
}

/// Asks WeChat whether a token it handed out still works, before a young token is thrown
/// away on a caller's report (see `confirm.rs`).
#[derive(Clone, Debug)]
pub struct ProbeRequest {
    pub kind: ProbeKind,
    pub token: AccessToken,
}

/// Makes upstream calls. Not `Send`: production calls run on the actor's thread with an awc
/// client, which is not `Send` either.
pub trait Fetcher {
    fn fetch(&self, req: FetchRequest) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>>;

    /// `Ok` when WeChat accepts the token; its errcode (40001, 42001, 40014: dead) or why it
    /// could not be asked otherwise.
    fn probe(&self, req: ProbeRequest) -> LocalBoxFuture<'static, Result<(), UpstreamError>>;
}

impl Fetcher for WechatClient {
    fn fetch(&self, req: FetchRequest) -> LocalBoxFuture<'static, Result<Fetched, UpstreamError>> {
        // A clone is a reference count: the future owns its client and outlives no one.
        let client = self.clone();
        Box::pin(async move {
            // Held until the answer is in; the call's own timeout starts after the wait.
            let _slot = client.slot(req.priority(), req.promotion().clone()).await;
            // The call's own future (awc's request and response state, a few kilobytes) is
            // boxed once the slot is ours: a queued fetch, of which a cold start has thousands,
            // then holds only the little it needs to wait.
            let call: LocalBoxFuture<'_, _> = match &req {
                FetchRequest::AccessToken { spec, force, .. } => match spec.kind {
                    AppKind::Official(Grant::ClientCredential) => {
                        Box::pin(client.fetch_token(&spec.appid, &spec.secret))
                    }
                    AppKind::Official(Grant::Stable) => {
                        Box::pin(client.fetch_stable_token(&spec.appid, &spec.secret, *force))
                    }
                    AppKind::Wecom => Box::pin(client.fetch_wecom_token(&spec.appid, &spec.secret)),
                },
                FetchRequest::Ticket { kind, token, .. } => {
                    Box::pin(client.fetch_ticket(token, *kind))
                }
            };
            call.await
        })
    }

    fn probe(&self, req: ProbeRequest) -> LocalBoxFuture<'static, Result<(), UpstreamError>> {
        let client = self.clone();
        Box::pin(async move {
            // Reporters wait for the verdict: ahead of background refreshes in the pool.
            let _slot = client.slot(Priority::Urgent, Promotion::default()).await;
            client.probe_token(req.kind, &req.token).await
        })
    }
}

//! wxtoken: the one process that fetches and refreshes WeChat access tokens for many apps.
//!
//! WeChat invalidates an app's previous access token each time a new one is fetched, so every
//! server that fetches its own token breaks the others (errcode 40001). wxtoken is the single
//! fetcher: it refreshes each app's token before expiry, serves it to authenticated clients over
//! HTTP, refreshes on demand when a client reports a rejected token and WeChat confirms it dead
//! (one upstream call however many report it), and persists tokens so a restart does not burn
//! quota.
//!
//! Map of the modules:
//! - `cli`: the command line (`serve`, `check-config`, `healthcheck`, `keygen`, `rekey`,
//!   `fake-wechat`, `demo`).
//! - `config`: settings from TOML plus `WXTOKEN_` overrides, validated, secrets redacted.
//! - `startup`: builds metrics, store, actors and the HTTP server.
//! - `alloc`: the C allocator's setting that returns freed request bodies to the kernel.
//! - `fd_limit`: raises the open-file limit at start and sizes the per-worker connection cap.
//! - `apps`: one supervised [`token::TokenActor`] per app and its published status.
//! - `token`: the token record, the actor state machine (tokens and tickets), its credential
//!   rules, shared-store sync, messages, clock and the refresh schedule.
//! - `upstream`: the WeChat client and error classification.
//! - `tls`: rustls client configuration and CA files.
//! - `server_tls`: HTTPS on the listener: its certificate (reloaded in place) and the files a
//!   reload re-reads.
//! - `client_ca`: the CA client certificates are checked against, reloaded in place.
//! - `hardening`: process settings made at start for the secrets it holds (no core dumps).
//! - `keygen`: `wxtoken keygen`: good random keys (the store's encryption key and its id, or
//!   with `--client` a client key).
//! - `clients`: the running clients: authentication by key, certificate or both, rate limits.
//! - `client_cert`: a TLS connection's client certificate and the names it carries.
//! - `rate_limit`: per-client token buckets and the failed-authentication budget per address.
//! - `files`: bounded, non-blocking reads of the files the configuration names.
//! - `store`: persistence and sharing (embedded redb file, or Redis for a fleet).
//! - `http`: routes, authentication, JSON errors; tickets and JS-SDK signatures, admin routes,
//!   and the WeChat-compatible facade.
//! - `proxy`: the API gateway: WeChat calls forwarded with the token added, one retry on a
//!   rejected token.
//! - `jssdk`: JS-SDK page signatures.
//! - `audit`: the audit trail (admin actions, token reads rolled up per minute).
//! - `seal`: encryption at rest of the secret fields the stores write (key ring, key ids).
//! - `rekey`: `wxtoken rekey`, every stored record rewritten under the current key.
//! - `secret`: tokens that print as fingerprints.
//! - `time`: `UnixMillis`, the range-checked timestamp of every stored record, and the one
//!   RFC 3339 formatter of answers (clamped: no time can make an answer panic).
//! - `reload`: hot reload of the configuration (SIGHUP, `POST /v1/admin/reload`).
//! - `messages`: WeChat's message and event pushes: taken once, persisted, delivered to
//!   `[[routes]]` at least once.
//! - `metrics`: Prometheus series and scrape-time gauges.
//! - `push`: WeChat's encrypted push protocol: signature, decryption, replay refusal, events.
//! - `platform`: the Open Platform: a running platform behind one API (pushes received, the
//!   component token, its authorizers, reconciliation, background work).
//! - `wecom`: WeCom service providers: running suites (callbacks, suite ticket and token,
//!   installed corps and their tokens, AuthCode exchanges) and provider tokens, built on the
//!   platform's rooms.
//! - `fake`: a fake WeChat for tests, the demo and manual runs.
//! - `telemetry`: logging.
//! - `healthcheck`: the probe command for images without a shell.
//! - `notify`: `READY=1` and `STOPPING=1` for systemd's `Type=notify`.

pub mod alloc;
pub mod apps;
pub mod audit;
pub mod cli;
pub mod client_ca;
pub mod client_cert;
pub mod clients;
pub mod config;
pub mod fake;
pub mod fd_limit;
pub mod files;
pub mod hardening;
pub mod healthcheck;
pub mod http;
pub mod json;
pub mod jssdk;
pub mod keygen;
pub mod messages;
pub mod metrics;
pub mod notify;
pub mod platform;
pub mod proxy;
pub mod push;
pub mod rate_limit;
pub mod rekey;
pub mod reload;
pub mod seal;
pub mod secret;
pub mod server_tls;
pub mod startup;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod token;
pub mod upstream;
pub mod wecom;

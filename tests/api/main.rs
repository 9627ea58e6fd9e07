//! Integration tests: the server and its fake WeChat over real HTTP on 127.0.0.1, grouped by
//! concern in folders; `support` holds the harness every folder shares.

mod fleet;
mod gateway;
mod hostile;
mod messages;
mod ops;
mod platform;
mod support;
mod token;
mod trust;
mod wecom;

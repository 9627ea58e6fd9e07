//! Shared test machinery: the `TestApp` builder and its fake WeChat, typed answers, Redis fleets,
//! and every helper more than one test file uses (the binary, raw sockets, tools, certificates).

pub mod answers;
pub mod config;
pub mod deliveries;
pub mod facade;
pub mod fleet;
pub mod gateway;
pub mod ha;
pub mod helpers;
pub mod markdown;
pub mod messages;
pub mod ops_files;
pub mod pki;
pub mod platform;
pub mod process;
pub mod promtool;
pub mod raw_http;
pub mod raw_upstream;
pub mod redis_topology;
pub mod tmpfs;
pub mod wechatpy;
pub mod wecom;

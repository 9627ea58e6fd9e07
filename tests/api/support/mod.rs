//! Shared test machinery: the `TestApp` builder and its fake WeChat, typed answers, Redis fleets.

pub mod answers;
pub mod config;
pub mod facade;
pub mod fleet;
pub mod gateway;
pub mod helpers;
pub mod markdown;
pub mod messages;
pub mod platform;
pub mod redis_topology;
pub mod wecom;

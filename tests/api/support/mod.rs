//! Shared test machinery: the `TestApp` builder and its fake WeChat, typed answers, Redis fleets.

pub mod answers;
pub mod fleet;
pub mod helpers;
pub mod platform;
pub mod redis_topology;

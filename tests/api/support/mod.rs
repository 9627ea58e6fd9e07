//! Shared test machinery: the `TestApp` harness with its fake WeChat, and the Redis topologies.

pub mod answers;
pub mod helpers;
pub mod redis_topology;

//! Several instances sharing Redis: HA, budgets, freezes, scale, sentinel, cluster and TLS.

pub mod ha;
pub mod redis_budget;
pub mod redis_cluster;
pub mod redis_freeze;
pub mod redis_scale;
pub mod redis_sentinel;
pub mod redis_tls;

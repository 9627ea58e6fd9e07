//! WeCom service providers: a suite's callbacks and URL check, its ticket and suite token, the
//! installed corps' tokens and states, pre-auth codes, provider tokens, and what survives a
//! restart.

pub mod callbacks;
pub mod corps;
pub mod durability;
pub mod facade;
pub mod gateway;
pub mod metrics;
pub mod reload;
pub mod tickets;

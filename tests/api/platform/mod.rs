//! The Open Platform: component and authorizer tokens, pushes and their crypto, store, config.

pub mod config_platforms;
pub mod end_to_end;
pub mod fake_component;
pub mod platform_crypto;
pub mod platform_facade;
pub mod platform_resume;
pub mod platform_store;

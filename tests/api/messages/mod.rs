//! WeChat's message pushes: the message URLs of apps and authorized accounts, the release
//! check, and their delivery to routes (and the purge of those given up).

pub mod admin;
pub mod delivery;
pub mod durability;
pub mod load;
pub mod logs;
pub mod platform_events;
pub mod receive;
pub mod release_check;
pub mod reply;
pub mod retention;
pub mod route_reload;

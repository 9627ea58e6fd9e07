//! What goes wrong from outside: hostile clients and upstreams, faults, full disk, bad data.

pub mod config_hostile;
pub mod corrupt_records;
pub mod disk_full;
pub mod faults;
pub mod hostile_clients;
pub mod hostile_upstream;

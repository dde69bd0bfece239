//! arch: Synnefo/Archipelago-style storage in a local directory. One content-addressed block
//! store (`storage`), a repository with its metadata catalog (`repo`), and the services on top
//! (`services`: objects, images, volumes). The CLI (`cmd`, `cli`) renders their reports.

pub mod cli;
pub mod cmd;
pub mod customize;
pub mod error;
pub mod integrity;
pub mod interrupt;
pub mod nbd;
pub mod progress;
pub mod repo;
pub mod services;
pub mod storage;
pub mod stream;
pub mod time;
pub mod tools;
pub mod units;

pub use error::{Error, Result};

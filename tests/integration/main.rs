//! Integration tests: one test binary (fast to link) whose modules each drive the real `arch`
//! binary in per-test temp directories.

mod catalog_db;
mod concurrency;
mod crash;
mod crash_customize;
mod crash_volumes;
mod customize;
mod customize_fuse;
mod faults;
mod hostile;
mod images;
mod integrity;
mod migration;
mod objects;
mod packaging;
mod privacy;
mod quarantine;
mod serve;
mod sizes;
mod util;
mod versions;
mod volumes;

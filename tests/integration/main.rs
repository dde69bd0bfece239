//! Integration tests: one test binary (fast to link) whose modules each drive the real `arch`
//! binary in per-test temp directories.

mod catalog_db;
mod concurrency;
mod crash;
mod crash_customize;
mod crash_order;
mod crash_transfer;
mod crash_volumes;
mod customize;
mod customize_fuse;
mod faults;
mod hostile;
mod images;
mod integrity;
mod json_contract;
mod migration;
mod objects;
mod packaging;
mod privacy;
mod quarantine;
mod remote_catalog;
mod remote_hosts;
mod remote_store;
mod serve;
mod serve_hostile;
mod serve_staged;
mod serve_vm;
mod sizes;
mod transfer;
mod util;
mod ux;
mod ux_docs;
mod versions;
mod volumes;

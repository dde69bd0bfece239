//! Integration tests: one test binary (fast to link) whose modules each drive the real `arch`
//! binary in per-test temp directories.

mod crash;
mod crash_volumes;
mod customize;
mod faults;
mod images;
mod integrity;
mod objects;
mod packaging;
mod sizes;
mod util;
mod volumes;

//! The services: objects, images and volumes over one block store. Each operation
//! returns a report and never prints.

pub mod images;
pub mod listing;
pub mod names;
pub mod objects;
pub mod transfer;
pub mod versions;
pub mod volumes;

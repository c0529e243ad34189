//! Building blocks for networks: the parameter arena and weight initialisation.

pub mod init;
pub mod params;

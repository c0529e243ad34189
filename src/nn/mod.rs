//! Networks: the parameter arena, weight initialisation, layers and the reference networks.

pub mod init;
pub mod layers;
pub mod nets;
pub mod params;

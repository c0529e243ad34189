//! Checkpoints: networks, optimizer state and run state on disk.

pub mod native;
pub mod pickle;
pub mod torch_pth;

//! Checkpoints: networks, optimizer state and run state on disk.

pub mod detect;
pub mod native;
pub mod pickle;
pub mod torch_pth;

//! Checkpoints: networks, optimizer state and run state on disk.

pub mod native;

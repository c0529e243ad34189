//! Applying trained generators to whole volumes.

pub mod slicewise;

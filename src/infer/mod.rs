//! Applying trained generators to whole volumes: slice by slice (2D) or by sliding windows (3D).

pub mod slicewise;
pub mod sliding;

//! Everything between files on disk and tensors: NIfTI volumes, orientation, intensity
//! normalisation, slices and patches, datasets, the synthetic phantom and PNG export.
//! Only this module (with `checkpoint` and `report`) touches files; it never touches a device.

pub mod augment;
pub mod dataset;
pub mod discover;
pub mod error;
pub mod nifti;
pub mod normalize;
pub mod orientation;
pub mod patches;
pub mod phantom;
pub mod png;
pub mod resample;
pub mod slices;
pub mod volume;

pub use error::{DataError, DataResult};
pub use volume::Volume;

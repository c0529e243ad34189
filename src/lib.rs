//! mrgan: MRI contrast translation with GANs on a hand-written engine.
//!
//! The engine: [`tensor`] values, [`ops`] with CPU reference kernels, a hand-written
//! [`autograd`] tape, parameter arenas and initialisation in [`nn`], and [`optim`]isers.

pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod infer;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod report;
pub mod tensor;
pub mod training;

pub use error::{Error, Result};
pub use tensor::{Shape, Tensor};

//! Ops: each family has a `cpu` module with the reference kernels (generic over f32/f64 so
//! gradient checks run in f64) and a `mod.rs` that validates shapes, runs the kernels on
//! tensors and records the op on the autograd tape. An op runs where its operands live: on
//! a GPU tensor it launches the CUDA kernels (`device::cuda`, the `launch_*` methods), on a
//! CPU tensor the reference kernels.

pub mod concat;
pub mod conv;
pub mod elementwise;
pub mod loss;
pub mod norm;
pub mod pad;
pub mod reduce;
pub mod scratch;

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

/// The element types the CPU kernels run in: f32 for real work, f64 for gradient checks.
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Send
    + Sync
    + Debug
    + bytemuck::Pod
    + 'static
{
    /// Converts an f64 constant (a slope, an epsilon, a target) into this type.
    fn lit(v: f64) -> Self {
        Self::from_f64(v).expect("finite literal")
    }
}

impl Real for f32 {}
impl Real for f64 {}

/// A GPU op's result as a tensor of `shape`.
#[cfg(feature = "cuda")]
pub(crate) fn device_result(
    shape: &crate::tensor::Shape,
    result: crate::device::cuda::CudaResult<crate::device::cuda::DeviceBuffer>,
) -> crate::error::Result<crate::tensor::Tensor> {
    let buffer = result.map_err(crate::error::Error::Device)?;
    crate::tensor::Tensor::from_device(shape.clone(), buffer)
}

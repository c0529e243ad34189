//! Where tensors live and ops run. Tensors live on the CPU; with the `cuda` feature,
//! `cuda::CudaBackend` runs the kernels written so far (see its status note).

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod kernel_codes;
pub mod pool;
pub mod tiled_conv;

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The reference backend: rayon threads and the `gemm` crate.
    Cpu,
}

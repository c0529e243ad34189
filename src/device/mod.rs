//! Where tensors live and ops run. Only the CPU exists until the CUDA backend lands.

/// A compute device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// The reference backend: rayon threads and the `gemm` crate.
    Cpu,
}

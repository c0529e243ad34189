//! The conv ops' CUDA arm: the tiled implicit-GEMM kernels as `TiledLaunch::plan` picks them,
//! and the bias through the norm kernels with identity statistics
//! (`CudaBackend::launch_bias_add` / `launch_bias_grad`).

use super::ConvGeometry;
use crate::device::cuda::{ConvKernel, DeviceBuffer};
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// `kernel` (a tiled conv primitive) on `a`, `b`, with `bias` added over the result's
/// channels; `out_shape` is the result's shape (N, C, spatial...).
pub(super) fn primitive(
    kernel: ConvKernel,
    g: &ConvGeometry,
    (a, b): (&DeviceBuffer, &DeviceBuffer),
    bias: Option<&Tensor>,
    out_shape: Shape,
) -> Result<Tensor> {
    let backend = a.backend();
    let y = backend
        .launch_conv(kernel, g, a, b)
        .map_err(Error::Device)?;
    let y = match bias {
        None => y,
        Some(bias) => {
            let bias = bias.gpu_operand("conv")?;
            let (n, c, s) = out_shape.batch_channels_spatial("conv")?;
            backend
                .launch_bias_add(&y, bias, (n, c, s))
                .map_err(Error::Device)?
        }
    };
    Tensor::from_device(out_shape, y)
}

/// The per-channel sum of `dy` (N, C, spatial) as a `[C]` tensor on its device.
pub(super) fn bias_grad(dy: &DeviceBuffer, (n, c, s): (usize, usize, usize)) -> Result<Tensor> {
    let sums = dy.backend().launch_bias_grad(dy, (n, c, s));
    Tensor::from_device([c], sums.map_err(Error::Device)?)
}

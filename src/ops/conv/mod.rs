//! Convolution and transposed convolution, 2D (NCHW) and 3D (NCDHW).
//!
//! Three primitives do all the work: `fprop`, `dgrad` (gradient wrt the input) and `wgrad`
//! (gradient wrt the weight). A transposed conv is the adjoint of a conv, so its forward is
//! that conv's dgrad, its input gradient is fprop and its weight gradient is wgrad with the
//! operands swapped; no zeros are ever inserted.

pub mod cpu;
#[cfg(feature = "cuda")]
mod cuda;
mod geometry;

pub use geometry::{ConvGeometry, ConvOptions};

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
use crate::tensor::Tensor;

fn check_bias(op: &'static str, bias: Option<&Tensor>, channels: usize) -> Result<()> {
    match bias {
        Some(b) if b.dims() != [channels] => Err(shape_error(
            op,
            format!("bias must have shape [{channels}], got {}", b.shape()),
        )),
        _ => Ok(()),
    }
}

/// Runs fprop of `g` and adds the bias.
fn run_fprop(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &ConvGeometry) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(ab) = Tensor::cuda_buffers("conv", [x, w])? {
        let kernel = crate::device::cuda::ConvKernel::FpropTiled;
        return cuda::primitive(kernel, g, ab.into(), bias, g.output_shape());
    }
    let mut y = vec![0.0; g.output_shape().numel()];
    cpu::fprop(x.as_slice(), w.as_slice(), g, &mut y);
    if let Some(b) = bias {
        cpu::add_bias(&mut y, b.host_operand("conv")?, g.c_out, g.output_volume());
    }
    Tensor::from_vec(g.output_shape(), y)
}

/// Runs dgrad of `g` (the input side of the conv) and adds the bias over the input channels.
fn run_dgrad(dy: &Tensor, w: &Tensor, bias: Option<&Tensor>, g: &ConvGeometry) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(ab) = Tensor::cuda_buffers("conv dgrad", [dy, w])? {
        let kernel = crate::device::cuda::ConvKernel::DgradTiled;
        return cuda::primitive(kernel, g, ab.into(), bias, g.input_shape());
    }
    let mut dx = vec![0.0; g.input_shape().numel()];
    cpu::dgrad(dy.as_slice(), w.as_slice(), g, &mut dx);
    if let Some(b) = bias {
        cpu::add_bias(&mut dx, b.host_operand("conv")?, g.c_in, g.input_volume());
    }
    Tensor::from_vec(g.input_shape(), dx)
}

fn run_wgrad(x: &Tensor, dy: &Tensor, g: &ConvGeometry) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(ab) = Tensor::cuda_buffers("conv wgrad", [x, dy])? {
        let kernel = crate::device::cuda::ConvKernel::WgradTiled;
        return cuda::primitive(kernel, g, ab.into(), None, g.weight_shape());
    }
    let mut dw = vec![0.0; g.weight_shape().numel()];
    cpu::wgrad(x.as_slice(), dy.as_slice(), g, &mut dw);
    Tensor::from_vec(g.weight_shape(), dw)
}

fn run_bias_grad(dy: &Tensor, channels: usize, spatial: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(b) = dy.cuda_buffer() {
        return cuda::bias_grad(b, (dy.dims()[0], channels, spatial));
    }
    Tensor::from_vec([channels], cpu::bias_grad(dy.as_slice(), channels, spatial))
}

/// `conv(x [n, c_in, ...], w [c_out, c_in, k...], bias [c_out])`, zero padding.
pub fn conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, opts: ConvOptions) -> Result<Tensor> {
    let g = ConvGeometry::conv("conv", x.shape(), w.shape(), opts)?;
    check_bias("conv", bias, g.c_out)?;
    run_fprop(x, w, bias, &g)
}

/// `conv_transpose(x [n, c_in, ...], w [c_in, c_out, k...], bias [c_out])` as PyTorch's
/// ConvTranspose2d/3d.
pub fn conv_transpose(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    opts: ConvOptions,
) -> Result<Tensor> {
    let g = ConvGeometry::conv_transpose("conv_transpose", x.shape(), w.shape(), opts)?;
    check_bias("conv_transpose", bias, g.c_in)?;
    run_dgrad(x, w, bias, &g)
}

/// What a conv or transposed conv keeps for backward.
struct ConvBackward {
    x: Tensor,
    w: Tensor,
    geometry: ConvGeometry,
    transposed: bool,
}

impl Backward for ConvBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let g = &self.geometry;
        let need = |i: usize| needs.get(i).copied().unwrap_or(false);
        let grads = if self.transposed {
            // Forward was dgrad: gy lives on the conv's input side, x on its output side.
            vec![
                need(0)
                    .then(|| run_fprop(gy, &self.w, None, g))
                    .transpose()?,
                need(1).then(|| run_wgrad(gy, &self.x, g)).transpose()?,
                need(2)
                    .then(|| run_bias_grad(gy, g.c_in, g.input_volume()))
                    .transpose()?,
            ]
        } else {
            vec![
                need(0)
                    .then(|| run_dgrad(gy, &self.w, None, g))
                    .transpose()?,
                need(1).then(|| run_wgrad(&self.x, gy, g)).transpose()?,
                need(2)
                    .then(|| run_bias_grad(gy, g.c_out, g.output_volume()))
                    .transpose()?,
            ]
        };
        Ok(grads)
    }
}

impl Tape {
    /// Records `conv(x, w, bias)`; see [`conv`].
    pub fn conv(&mut self, x: Var, w: Var, bias: Option<Var>, opts: ConvOptions) -> Result<Var> {
        self.record_conv(x, w, bias, opts, false)
    }

    /// Records `conv_transpose(x, w, bias)`; see [`conv_transpose`].
    pub fn conv_transpose(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        opts: ConvOptions,
    ) -> Result<Var> {
        self.record_conv(x, w, bias, opts, true)
    }

    fn record_conv(
        &mut self,
        x: Var,
        w: Var,
        bias: Option<Var>,
        opts: ConvOptions,
        transposed: bool,
    ) -> Result<Var> {
        let (xv, wv) = (self.value(x).clone(), self.value(w).clone());
        let bv = bias.map(|b| self.value(b).clone());
        let (y, geometry) = if transposed {
            let g = ConvGeometry::conv_transpose("conv_transpose", xv.shape(), wv.shape(), opts)?;
            (conv_transpose(&xv, &wv, bv.as_ref(), opts)?, g)
        } else {
            let g = ConvGeometry::conv("conv", xv.shape(), wv.shape(), opts)?;
            (conv(&xv, &wv, bv.as_ref(), opts)?, g)
        };
        let mut inputs = vec![x, w];
        inputs.extend(bias);
        Ok(self.record(y, &inputs, || ConvBackward {
            x: xv,
            w: wv,
            geometry,
            transposed,
        }))
    }
}

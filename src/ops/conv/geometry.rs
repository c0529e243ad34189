//! Convolution geometry shared by conv and transposed conv, in 2D and 3D.
//!
//! Everything is stored as 3D: a 2D conv is a 3D conv with depth 1, kernel depth 1, stride 1
//! and no depth padding. That keeps one set of kernels for both dimensionalities.

use crate::error::{Result, shape_error};
use crate::ops::pad::PadMode;
use crate::ops::pad::cpu::PadGeometry;
use crate::tensor::Shape;

/// Stride, padding and (for transposed convs) output padding, the same on every spatial axis
/// as in the reference networks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    pub stride: usize,
    pub padding: usize,
    /// What the padding holds: zeros (nn.Conv2d's default) or the input reflected or
    /// replicated, as the ResNet generators' `ReflectionPad` / `ReplicationPad` layers
    /// before a conv with no padding of its own. A conv that pads itself this way needs no
    /// padded copy of its input, and its input gradient comes out on the unpadded positions
    /// (see `kernels/conv.cu`).
    pub pad_mode: PadMode,
    /// Extra rows added on the far side of a transposed conv's output; must be < stride.
    pub output_padding: usize,
}

impl ConvOptions {
    pub fn new(stride: usize, padding: usize) -> Self {
        ConvOptions {
            stride,
            padding,
            pad_mode: PadMode::Zero,
            output_padding: 0,
        }
    }
    pub fn with_pad_mode(mut self, pad_mode: PadMode) -> Self {
        self.pad_mode = pad_mode;
        self
    }
    pub fn with_output_padding(mut self, output_padding: usize) -> Self {
        self.output_padding = output_padding;
        self
    }
}

/// The geometry of a (forward) convolution `input [n, c_in, d, h, w] -> output [n, c_out, ...]`
/// with weights `[c_out, c_in, kd, kh, kw]`. A transposed conv is described by the conv it is
/// the adjoint of: its own output is this geometry's `input`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub c_out: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub pad: [usize; 3],
    /// Zero unless the conv pads with reflection or replication (`ConvOptions::pad_mode`);
    /// always zero without padding, so that equal convs compare equal.
    pub pad_mode: PadMode,
    pub output: [usize; 3],
    /// 2 or 3: how many trailing dims the tensors have.
    pub spatial_rank: usize,
}

/// Splits an N, C, spatial tensor shape into its parts, lifting 2D to 3D with depth 1.
fn split(op: &'static str, what: &str, shape: &Shape) -> Result<(usize, usize, [usize; 3])> {
    match *shape.dims() {
        [n, c, h, w] => Ok((n, c, [1, h, w])),
        [n, c, d, h, w] => Ok((n, c, [d, h, w])),
        _ => Err(shape_error(
            op,
            format!("{what} must be 4D (N,C,H,W) or 5D (N,C,D,H,W), got {shape}"),
        )),
    }
}

/// Splits input and weight of a conv-like op after checking that they agree in rank and
/// that weight dim `w_channel_dim` matches the input's channels. Returns the input's batch,
/// channels, spatial size (lifted to 3D) and spatial rank.
fn split_operands(
    op: &'static str,
    x: &Shape,
    w: &Shape,
    w_channel_dim: usize,
) -> Result<(usize, usize, [usize; 3], usize)> {
    let (batch, channels, spatial) = split(op, "input", x)?;
    split(op, "weight", w)?;
    if w.rank() != x.rank() {
        return Err(shape_error(
            op,
            format!("input {x} and weight {w} differ in rank"),
        ));
    }
    let expected = w.dims()[w_channel_dim];
    if expected != channels {
        return Err(shape_error(
            op,
            format!("input {x} has {channels} channels but weight {w} expects {expected}"),
        ));
    }
    Ok((batch, channels, spatial, x.rank() - 2))
}

fn lift(spatial_rank: usize, v: usize, depth_value: usize) -> [usize; 3] {
    if spatial_rank == 2 {
        [depth_value, v, v]
    } else {
        [v, v, v]
    }
}

impl ConvGeometry {
    /// Geometry of `conv(x, w)` with `x [n, c_in, ...]`, `w [c_out, c_in, k...]`.
    pub fn conv(op: &'static str, x: &Shape, w: &Shape, opts: ConvOptions) -> Result<Self> {
        let (batch, c_in, input, spatial_rank) = split_operands(op, x, w, 1)?;
        let (c_out, _, kernel) = split(op, "weight", w)?;
        if opts.stride == 0 {
            return Err(shape_error(op, "stride must be at least 1"));
        }
        let stride = lift(spatial_rank, opts.stride, 1);
        let pad = lift(spatial_rank, opts.padding, 0);
        let pad_mode = if opts.padding == 0 {
            PadMode::Zero
        } else {
            opts.pad_mode
        };
        let mut output = [0; 3];
        for a in 0..3 {
            if pad_mode == PadMode::Reflect && pad[a] >= input[a] {
                return Err(shape_error(
                    op,
                    format!(
                        "reflection padding {} needs every spatial size > {}, got input {x}",
                        opts.padding, opts.padding
                    ),
                ));
            }
            let padded = input[a] + 2 * pad[a];
            if kernel[a] == 0 || padded < kernel[a] {
                return Err(shape_error(
                    op,
                    format!(
                        "kernel {w} does not fit input {x} with padding {}",
                        opts.padding
                    ),
                ));
            }
            output[a] = (padded - kernel[a]) / stride[a] + 1;
        }
        Ok(ConvGeometry {
            batch,
            c_in,
            c_out,
            input,
            kernel,
            stride,
            pad,
            pad_mode,
            output,
            spatial_rank,
        })
    }

    /// Geometry of the conv whose adjoint is `conv_transpose(x, w)`, with `x [n, c_in_t, ...]`
    /// and `w [c_in_t, c_out_t, k...]` as PyTorch stores it. The transposed conv's output size
    /// is `(i - 1) * stride - 2 * padding + k + output_padding`.
    pub fn conv_transpose(
        op: &'static str,
        x: &Shape,
        w: &Shape,
        opts: ConvOptions,
    ) -> Result<Self> {
        let (batch, c_in_t, x_spatial, spatial_rank) = split_operands(op, x, w, 0)?;
        let (_, c_out_t, kernel) = split(op, "weight", w)?;
        if opts.pad_mode != PadMode::Zero && opts.padding > 0 {
            return Err(shape_error(
                op,
                "a transposed conv pads with zeros only (PyTorch's ConvTranspose does too)",
            ));
        }
        if opts.stride == 0 || opts.output_padding >= opts.stride {
            return Err(shape_error(
                op,
                format!(
                    "need stride >= 1 and output_padding < stride, got stride {} output_padding {}",
                    opts.stride, opts.output_padding
                ),
            ));
        }
        let stride = lift(spatial_rank, opts.stride, 1);
        let pad = lift(spatial_rank, opts.padding, 0);
        let out_pad = lift(spatial_rank, opts.output_padding, 0);
        let mut out_t = [0; 3];
        for a in 0..3 {
            let full = (x_spatial[a] - 1) * stride[a] + kernel[a] + out_pad[a];
            if x_spatial[a] == 0 || full <= 2 * pad[a] {
                return Err(shape_error(
                    op,
                    format!("padding {} leaves no output for input {x}", opts.padding),
                ));
            }
            out_t[a] = full - 2 * pad[a];
        }
        Ok(ConvGeometry {
            batch,
            c_in: c_out_t,
            c_out: c_in_t,
            input: out_t,
            kernel,
            stride,
            pad,
            pad_mode: PadMode::Zero,
            output: x_spatial,
            spatial_rank,
        })
    }

    /// Elements of one sample's input volume per channel.
    pub fn input_volume(&self) -> usize {
        self.input.iter().product()
    }
    /// Output positions per sample and channel: the GEMM's N.
    pub fn output_volume(&self) -> usize {
        self.output.iter().product()
    }
    /// Taps per output channel, `c_in * kd * kh * kw`: the GEMM's K.
    pub fn patch_len(&self) -> usize {
        self.c_in * self.kernel.iter().product::<usize>()
    }

    fn tensor_shape(&self, channels: usize, spatial: [usize; 3]) -> Shape {
        let mut dims = vec![self.batch, channels];
        dims.extend_from_slice(&spatial[3 - self.spatial_rank..]);
        Shape::new(&dims)
    }
    pub fn input_shape(&self) -> Shape {
        self.tensor_shape(self.c_in, self.input)
    }
    pub fn output_shape(&self) -> Shape {
        self.tensor_shape(self.c_out, self.output)
    }
    /// Weight shape `[c_out, c_in, k...]`.
    pub fn weight_shape(&self) -> Shape {
        let mut dims = vec![self.c_out, self.c_in];
        dims.extend_from_slice(&self.kernel[3 - self.spatial_rank..]);
        Shape::new(&dims)
    }

    /// For a conv that pads with reflection or replication: that padding of its input, and the
    /// same conv on the padded input with no padding of its own. It computes what this one
    /// does: fprop and wgrad read the padded input, dgrad's result is the padded input's
    /// gradient, which the padding's backward folds onto the input. None for zero padding.
    pub fn explicit_padding(&self) -> Option<(PadGeometry, ConvGeometry)> {
        if self.pad_mode == PadMode::Zero {
            return None;
        }
        let padding = PadGeometry {
            planes: self.batch * self.c_in,
            input: self.input,
            pads: self.pad.map(|p| [p, p]),
        };
        let padded = ConvGeometry {
            input: padding.output(),
            pad: [0; 3],
            pad_mode: PadMode::Zero,
            ..*self
        };
        Some((padding, padded))
    }

    /// Multiply-adds of one fprop (also of one dgrad or wgrad) over the whole batch.
    pub fn macs(&self) -> u64 {
        (self.batch * self.c_out * self.patch_len() * self.output_volume()) as u64
    }
}

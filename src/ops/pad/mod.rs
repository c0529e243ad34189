//! Zero, reflection and replication padding of the spatial axes (2D and 3D).

pub mod cpu;

use cpu::PadGeometry;
pub use cpu::PadMode;

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
#[cfg(feature = "cuda")]
use crate::ops::device_result;
use crate::tensor::{Shape, Tensor};

/// Geometry for padding every spatial axis of `shape` by `amount` on both sides.
fn geometry(op: &'static str, shape: &Shape, mode: PadMode, amount: usize) -> Result<PadGeometry> {
    let (n, c, _) = shape.batch_channels_spatial(op)?;
    let (input, spatial_rank) = match *shape.dims() {
        [_, _, h, w] => ([1, h, w], 2),
        [_, _, d, h, w] => ([d, h, w], 3),
        _ => {
            return Err(shape_error(
                op,
                format!("expected a 4D or 5D tensor, got {shape}"),
            ));
        }
    };
    let mut pads = [[amount; 2]; 3];
    if spatial_rank == 2 {
        pads[0] = [0, 0];
    }
    for &size in &input[3 - spatial_rank..] {
        if size == 0 {
            return Err(shape_error(
                op,
                format!("cannot pad the empty tensor {shape}"),
            ));
        }
        if mode == PadMode::Reflect && amount >= size {
            return Err(shape_error(
                op,
                format!(
                    "reflection padding {amount} needs every spatial size > {amount}, got {shape}"
                ),
            ));
        }
    }
    Ok(PadGeometry {
        planes: n * c,
        input,
        pads,
    })
}

fn output_shape(shape: &Shape, g: &PadGeometry) -> Shape {
    let d = shape.dims();
    let out = g.output();
    let mut dims = d[..2].to_vec();
    dims.extend_from_slice(&out[3 - (d.len() - 2)..]);
    Shape::new(&dims)
}

/// Pads every spatial axis of `x` by `amount` on both sides.
pub fn pad(x: &Tensor, mode: PadMode, amount: usize) -> Result<Tensor> {
    let g = geometry("pad", x.shape(), mode, amount)?;
    let out_shape = output_shape(x.shape(), &g);
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        return device_result(&out_shape, d.backend().launch_pad(d, &g, mode, false));
    }
    let mut y = vec![0.0; out_shape.numel()];
    cpu::pad_forward(x.as_slice(), &g, mode, &mut y);
    Tensor::from_vec(out_shape, y)
}

struct PadBackward {
    input_shape: Shape,
    geometry: PadGeometry,
    mode: PadMode,
}

impl Backward for PadBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some(d) = gy.cuda_buffer() {
            let dx = d.backend().launch_pad(d, &self.geometry, self.mode, true);
            return Ok(vec![Some(device_result(&self.input_shape, dx)?)]);
        }
        let mut dx = vec![0.0; self.input_shape.numel()];
        cpu::pad_backward(gy.as_slice(), &self.geometry, self.mode, &mut dx);
        Ok(vec![Some(Tensor::from_vec(self.input_shape.clone(), dx)?)])
    }
}

impl Tape {
    /// Records [`pad`].
    pub fn pad(&mut self, x: Var, mode: PadMode, amount: usize) -> Result<Var> {
        let xv = self.value(x);
        let geometry = geometry("pad", xv.shape(), mode, amount)?;
        let input_shape = xv.shape().clone();
        let y = pad(xv, mode, amount)?;
        Ok(self.record(y, &[x], || PadBackward {
            input_shape,
            geometry,
            mode,
        }))
    }
}

//! Reductions of a whole tensor to one value.

use crate::autograd::{Backward, Tape, Var};
use crate::device::Device;
use crate::error::Result;
use crate::tensor::{Shape, Tensor};

/// Sum of all elements, accumulated in f64 so long reductions stay accurate (on a GPU, per
/// block in double, the blocks added on the host).
fn sum_f64(x: &Tensor) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        return d
            .backend()
            .launch_sum(d)
            .map_err(crate::error::Error::Device);
    }
    Ok(x.as_slice().iter().map(|&v| v as f64).sum::<f64>())
}

/// Sum of all elements.
pub fn sum(x: &Tensor) -> Result<f32> {
    Ok(sum_f64(x)? as f32)
}

/// Mean of all elements.
pub fn mean(x: &Tensor) -> Result<f32> {
    Ok((sum_f64(x)? / x.numel().max(1) as f64) as f32)
}

/// Backward of sum / mean: every input element receives `gy * factor`, on the input's
/// device.
struct BroadcastBackward {
    shape: Shape,
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    device: Device,
    factor: f32,
}

impl Backward for BroadcastBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        let value = gy.item()? * self.factor;
        let shape = &self.shape;
        #[cfg(feature = "cuda")]
        if let Device::Cuda(backend) = &self.device {
            let filled = backend.launch_fill(shape.numel(), value);
            return Ok(vec![Some(crate::ops::device_result(shape, filled)?)]);
        }
        Ok(vec![Some(Tensor::full(shape.clone(), value))])
    }
}

/// Sum and mean reduce to a CPU scalar wherever their input lives: the value is read on the
/// host anyway (it is a loss), and the backward broadcasts it back to the input's device.
impl Tape {
    /// Records [`sum()`].
    pub fn sum(&mut self, x: Var) -> Result<Var> {
        let input = self.value(x);
        let y = Tensor::scalar(sum(input)?);
        let (shape, device) = (input.shape().clone(), input.device());
        Ok(self.record(y, &[x], || BroadcastBackward {
            shape,
            device,
            factor: 1.0,
        }))
    }

    /// Records [`mean()`].
    pub fn mean(&mut self, x: Var) -> Result<Var> {
        let input = self.value(x);
        let factor = 1.0 / input.numel().max(1) as f32;
        let y = Tensor::scalar(mean(input)?);
        let (shape, device) = (input.shape().clone(), input.device());
        Ok(self.record(y, &[x], || BroadcastBackward {
            shape,
            device,
            factor,
        }))
    }
}

//! Reductions of a whole tensor to one value.

use crate::autograd::{Backward, Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

/// Sum of all elements, accumulated in f64 so long reductions stay accurate.
pub fn sum(x: &Tensor) -> f32 {
    x.as_slice().iter().map(|&v| v as f64).sum::<f64>() as f32
}

/// Mean of all elements.
pub fn mean(x: &Tensor) -> f32 {
    (x.as_slice().iter().map(|&v| v as f64).sum::<f64>() / x.numel().max(1) as f64) as f32
}

/// Backward of sum / mean: every input element receives `gy * factor`.
struct BroadcastBackward {
    input: crate::tensor::Shape,
    factor: f32,
}

impl Backward for BroadcastBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(Tensor::full(
            self.input.clone(),
            gy.item()? * self.factor,
        ))])
    }
}

impl Tape {
    /// Records the sum of all elements, shape `[1]`.
    pub fn sum(&mut self, x: Var) -> Var {
        let input = self.value(x).shape().clone();
        let y = Tensor::scalar(sum(self.value(x)));
        self.record(y, &[x], || BroadcastBackward { input, factor: 1.0 })
    }

    /// Records the mean of all elements, shape `[1]`.
    pub fn mean(&mut self, x: Var) -> Var {
        let input = self.value(x).shape().clone();
        let factor = 1.0 / input.numel().max(1) as f32;
        let y = Tensor::scalar(mean(self.value(x)));
        self.record(y, &[x], || BroadcastBackward { input, factor })
    }
}

//! Element-wise ops: activations, dropout, addition, multiplication and scaling.

pub mod cpu;

pub use cpu::Activation;

use crate::autograd::{Backward, Tape, Var};
use crate::error::{Result, shape_error};
#[cfg(feature = "cuda")]
use crate::ops::device_result;
use crate::tensor::Tensor;

fn map(x: &Tensor, f: impl Fn(&[f32], &mut [f32])) -> Result<Tensor> {
    let mut y = vec![0.0; x.numel()];
    f(x.as_slice(), &mut y);
    Tensor::from_vec(x.shape().clone(), y)
}

/// `a + b` for tensors of the same shape (no tape).
pub fn add_tensors(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.expect_same_shape("add", b)?;
    #[cfg(feature = "cuda")]
    if let Some([da, db]) = Tensor::cuda_buffers("add", [a, b])? {
        return device_result(a.shape(), da.backend().launch_binary(da, db, false));
    }
    let y = a
        .as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| x + y)
        .collect();
    Tensor::from_vec(a.shape().clone(), y)
}

/// `a * b` element by element, same shapes (no tape).
pub fn mul_tensors(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    a.expect_same_shape("mul", b)?;
    #[cfg(feature = "cuda")]
    if let Some([da, db]) = Tensor::cuda_buffers("mul", [a, b])? {
        return device_result(a.shape(), da.backend().launch_binary(da, db, true));
    }
    let y = a
        .as_slice()
        .iter()
        .zip(b.as_slice())
        .map(|(x, y)| x * y)
        .collect();
    Tensor::from_vec(a.shape().clone(), y)
}

/// `s * x` (no tape).
pub fn scale_tensor(x: &Tensor, s: f32) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        return device_result(x.shape(), d.backend().launch_scale(d, s));
    }
    map(x, |x, y| y.iter_mut().zip(x).for_each(|(o, v)| *o = v * s))
}

/// `act(x)` (no tape).
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        return device_result(x.shape(), d.backend().launch_activation(d, act));
    }
    map(x, |x, y| cpu::activate(x, act, y))
}

struct ActivationBackward {
    x: Tensor,
    y: Tensor,
    act: Activation,
}

impl Backward for ActivationBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        #[cfg(feature = "cuda")]
        if let Some([dy, x, y]) = Tensor::cuda_buffers("activation", [gy, &self.x, &self.y])? {
            let dx = dy.backend().launch_activation_backward(dy, x, y, self.act);
            return Ok(vec![Some(device_result(gy.shape(), dx)?)]);
        }
        let dx = map(gy, |dy, dx| {
            cpu::activate_backward(dy, self.x.as_slice(), self.y.as_slice(), self.act, dx)
        })?;
        Ok(vec![Some(dx)])
    }
}

struct DropoutBackward {
    p: f64,
    seed: u64,
}

impl Backward for DropoutBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        // The same mask and scale as the forward: dropout of gy with the same seed.
        Ok(vec![Some(dropout(gy, self.p, self.seed)?)])
    }
}

/// Inverted dropout with the counter-based mask of `seed` (the same on every device).
fn dropout(x: &Tensor, p: f64, seed: u64) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(d) = x.cuda_buffer() {
        return device_result(x.shape(), d.backend().launch_dropout(d, p, seed));
    }
    map(x, |x, y| cpu::dropout(x, p, seed, y))
}

struct AddBackward;

impl Backward for AddBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(gy.clone()), Some(gy.clone())])
    }
}

struct MulBackward {
    a: Tensor,
    b: Tensor,
}

impl Backward for MulBackward {
    fn backward(&self, gy: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![
            needs[0].then(|| mul_tensors(gy, &self.b)).transpose()?,
            needs[1].then(|| mul_tensors(gy, &self.a)).transpose()?,
        ])
    }
}

struct ScaleBackward(f32);

impl Backward for ScaleBackward {
    fn backward(&self, gy: &Tensor, _needs: &[bool]) -> Result<Vec<Option<Tensor>>> {
        Ok(vec![Some(scale_tensor(gy, self.0)?)])
    }
}

impl Tape {
    /// Records `act(x)`.
    pub fn activation(&mut self, x: Var, act: Activation) -> Result<Var> {
        let xv = self.value(x).clone();
        let y = activation(&xv, act)?;
        let yv = y.clone();
        Ok(self.record(y, &[x], || ActivationBackward { x: xv, y: yv, act }))
    }

    pub fn relu(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Activation::Relu)
    }
    pub fn leaky_relu(&mut self, x: Var, slope: f64) -> Result<Var> {
        self.activation(x, Activation::LeakyRelu(slope))
    }
    pub fn tanh(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Activation::Tanh)
    }
    pub fn sigmoid(&mut self, x: Var) -> Result<Var> {
        self.activation(x, Activation::Sigmoid)
    }

    /// Dropout with drop probability `p` in [0, 1), its mask reproducible from `seed`. In
    /// evaluation mode (`training` false) it is the identity, as `nn.Dropout` under `eval()`.
    pub fn dropout(&mut self, x: Var, p: f64, seed: u64, training: bool) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(shape_error(
                "dropout",
                format!("p must be in [0, 1), got {p}"),
            ));
        }
        if !training {
            return Ok(x);
        }
        let y = dropout(self.value(x), p, seed)?;
        Ok(self.record(y, &[x], || DropoutBackward { p, seed }))
    }

    /// Records `a + b` (same shapes).
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        let y = add_tensors(self.value(a), self.value(b))?;
        Ok(self.record(y, &[a, b], || AddBackward))
    }

    /// Records `a * b` element by element (same shapes).
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        let (av, bv) = (self.value(a).clone(), self.value(b).clone());
        let y = mul_tensors(&av, &bv)?;
        Ok(self.record(y, &[a, b], || MulBackward { a: av, b: bv }))
    }

    /// Records `s * x`.
    pub fn scale(&mut self, x: Var, s: f32) -> Result<Var> {
        let y = scale_tensor(self.value(x), s)?;
        Ok(self.record(y, &[x], || ScaleBackward(s)))
    }
}

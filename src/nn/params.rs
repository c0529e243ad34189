//! One contiguous arena holding every parameter of a network, with its gradients beside it.
//!
//! Contiguity is what lets the optimizer update a whole network in one fused pass and zero
//! all gradients with one fill (one kernel launch each on a GPU).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::autograd::Gradients;
use crate::error::{Error, Result};
use crate::tensor::{Shape, Tensor};

/// Index of a parameter inside its arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

/// What a parameter is for; initialisation rules depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// Conv / transposed-conv weight: drawn by the chosen init scheme.
    Weight,
    /// Conv bias or norm shift: zero.
    Bias,
    /// BatchNorm scale: N(1, gain) in the reference.
    NormScale,
}

/// One named parameter's place in the arena.
#[derive(Clone, Debug)]
pub struct ParamEntry {
    pub name: String,
    pub shape: Shape,
    pub role: ParamRole,
    pub offset: usize,
}

impl ParamEntry {
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.shape.numel()
    }
}

static NEXT_ARENA: AtomicU64 = AtomicU64::new(1);

/// A network's parameters and their gradients, each in one contiguous buffer.
pub struct ParamArena {
    uid: u64,
    values: Vec<f32>,
    grads: Vec<f32>,
    entries: Vec<ParamEntry>,
    requires_grad: bool,
    /// Bumped by every mutable access to the values, so tapes notice updated parameters.
    version: u64,
}

impl Default for ParamArena {
    fn default() -> Self {
        Self::new()
    }
}

impl ParamArena {
    pub fn new() -> Self {
        ParamArena {
            uid: NEXT_ARENA.fetch_add(1, Ordering::Relaxed),
            values: Vec::new(),
            grads: Vec::new(),
            entries: Vec::new(),
            requires_grad: true,
            version: 0,
        }
    }

    /// Adds a zero-filled parameter. Scale parameters start at one, as PyTorch's defaults.
    pub fn add(&mut self, name: &str, shape: impl Into<Shape>, role: ParamRole) -> ParamId {
        let shape = shape.into();
        let offset = self.values.len();
        let fill = if role == ParamRole::NormScale {
            1.0
        } else {
            0.0
        };
        self.values.resize(offset + shape.numel(), fill);
        self.grads.resize(offset + shape.numel(), 0.0);
        self.entries.push(ParamEntry {
            name: name.to_string(),
            shape,
            role,
            offset,
        });
        ParamId(self.entries.len() - 1)
    }

    /// Unique per arena: tapes use it to tell parameters of different networks apart.
    pub fn uid(&self) -> u64 {
        self.uid
    }
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }
    pub fn entry(&self, id: ParamId) -> &ParamEntry {
        &self.entries[id.0]
    }
    /// Total number of scalars.
    pub fn len(&self) -> usize {
        self.values.len()
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The per-network switch: when off, tapes treat the parameters as constants (the
    /// discriminator during the generator step), while gradients still flow through them.
    pub fn set_requires_grad(&mut self, on: bool) {
        self.requires_grad = on;
    }
    pub fn requires_grad(&self) -> bool {
        self.requires_grad
    }

    /// Changes whenever the values may have changed (an optimizer step, a load).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// A copy of parameter `id` as a tensor.
    pub fn tensor(&self, id: ParamId) -> Tensor {
        let e = self.entry(id);
        Tensor::from_vec(e.shape.clone(), self.values[e.range()].to_vec())
            .expect("entry range matches its shape")
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }
    pub fn values_mut(&mut self) -> &mut [f32] {
        self.version += 1;
        &mut self.values
    }
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }
    /// Values and gradients together, for the optimizer.
    pub fn values_and_grads_mut(&mut self) -> (&mut [f32], &[f32]) {
        self.version += 1;
        (&mut self.values, &self.grads)
    }
    pub fn value(&self, id: ParamId) -> &[f32] {
        &self.values[self.entry(id).range()]
    }
    pub fn value_mut(&mut self, id: ParamId) -> &mut [f32] {
        self.version += 1;
        let range = self.entry(id).range();
        &mut self.values[range]
    }
    pub fn grad(&self, id: ParamId) -> &[f32] {
        &self.grads[self.entry(id).range()]
    }

    /// Zeroes every gradient (PyTorch's `zero_grad`).
    pub fn zero_grad(&mut self) {
        self.grads.fill(0.0);
    }

    /// Adds this arena's parameter gradients from one backward pass into the gradient arena.
    /// Like PyTorch, gradients accumulate until `zero_grad`.
    pub fn accumulate_grads(&mut self, grads: &Gradients) -> Result<()> {
        for (key, g) in grads.params() {
            if key.arena != self.uid {
                continue;
            }
            let e = self
                .entries
                .get(key.param.0)
                .ok_or_else(|| Error::Params(format!("unknown parameter {:?}", key.param)))?;
            if g.shape() != &e.shape {
                return Err(Error::Params(format!(
                    "gradient of {} has shape {}, parameter has {}",
                    e.name,
                    g.shape(),
                    e.shape
                )));
            }
            for (acc, v) in self.grads[e.range()].iter_mut().zip(g.as_slice()) {
                *acc += v;
            }
        }
        Ok(())
    }
}

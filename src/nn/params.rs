//! One contiguous arena holding every parameter of a network, with its gradients beside it.
//!
//! Contiguity is what lets the optimizer update a whole network in one fused pass and zero
//! all gradients with one fill (one kernel launch each on a GPU). An arena is built,
//! initialised and loaded on the host, then moved whole to the device it trains on
//! (`to_device`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::autograd::Gradients;
use crate::device::Device;
use crate::device::flat::FlatBuffer;
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
    values: FlatBuffer,
    grads: FlatBuffer,
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
            values: FlatBuffer::Host(Vec::new()),
            grads: FlatBuffer::Host(Vec::new()),
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
        self.values.extend(shape.numel(), fill);
        self.grads.extend(shape.numel(), 0.0);
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

    /// Where the values, gradients (and the optimizer working on them) live.
    pub fn device(&self) -> Device {
        self.values.device()
    }

    /// Moves values and gradients to `device`.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        let empty = || FlatBuffer::Host(Vec::new());
        self.values = std::mem::replace(&mut self.values, empty()).to_device(device)?;
        self.grads = std::mem::replace(&mut self.grads, empty()).to_device(device)?;
        self.version += 1;
        Ok(())
    }

    /// A copy of parameter `id` as a tensor on the arena's device.
    pub fn tensor(&self, id: ParamId) -> Result<Tensor> {
        let e = self.entry(id);
        self.values.tensor(e.range(), e.shape.clone())
    }

    /// Every value, on the host wherever the arena lives (for checkpoints).
    pub fn values_to_vec(&self) -> Result<Vec<f32>> {
        self.values.to_vec()
    }

    /// Replaces every value (a loaded checkpoint), on the arena's device.
    pub fn load_values(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.len() {
            return Err(Error::Params(format!(
                "{} values given for an arena of {}",
                values.len(),
                self.len()
            )));
        }
        self.values = FlatBuffer::Host(values.to_vec()).to_device(&self.device())?;
        self.version += 1;
        Ok(())
    }

    /// Every gradient, on the host wherever the arena lives.
    pub fn grads_to_vec(&self) -> Result<Vec<f32>> {
        self.grads.to_vec()
    }

    /// The values of a host arena (initialisation, loading, tests); see `FlatBuffer::host`.
    pub fn values(&self) -> &[f32] {
        self.values.host()
    }
    pub fn values_mut(&mut self) -> &mut [f32] {
        self.version += 1;
        self.values.host_mut()
    }
    pub fn grads(&self) -> &[f32] {
        self.grads.host()
    }
    /// Values and gradients together, for the optimizer.
    pub fn buffers_mut(&mut self) -> (&mut FlatBuffer, &FlatBuffer) {
        self.version += 1;
        (&mut self.values, &self.grads)
    }
    pub fn value(&self, id: ParamId) -> &[f32] {
        &self.values.host()[self.entry(id).range()]
    }
    pub fn value_mut(&mut self, id: ParamId) -> &mut [f32] {
        self.version += 1;
        let range = self.entry(id).range();
        &mut self.values.host_mut()[range]
    }
    pub fn grad(&self, id: ParamId) -> &[f32] {
        &self.grads.host()[self.entry(id).range()]
    }

    /// Zeroes every gradient (PyTorch's `zero_grad`).
    pub fn zero_grad(&mut self) -> Result<()> {
        self.grads.zero()
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
            self.grads.add_at(e.offset, g)?;
        }
        Ok(())
    }
}

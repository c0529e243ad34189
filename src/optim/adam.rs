//! Adam with PyTorch's semantics (`torch.optim.Adam`, no amsgrad), as one fused pass over a
//! whole parameter arena. Its moment buffers are arenas of the same length.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::device::Device;
use crate::device::flat::FlatBuffer;
use crate::error::{Error, Result};
use crate::nn::params::ParamArena;

/// Adam's hyper-parameters; `Default` is PyTorch's (lr 1e-3, betas 0.9/0.999, eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 penalty added to the gradient (PyTorch's `weight_decay`), 0 by default.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// The reference GANs' setting: lr 2e-4, beta1 0.5.
    pub fn gan() -> Self {
        AdamConfig {
            lr: 2e-4,
            beta1: 0.5,
            ..Self::default()
        }
    }
}

/// One step's scalars, as the fused kernels take them: like PyTorch, computed in double and
/// applied in f32.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamFactors {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// lr / (1 - beta1^t).
    pub step_size: f32,
    /// sqrt(1 - beta2^t).
    pub bias_correction2_sqrt: f32,
}

impl AdamConfig {
    /// The scalars of step `t` (1-based) at learning rate `lr`.
    pub fn factors(&self, lr: f64, t: i32) -> AdamFactors {
        AdamFactors {
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            eps: self.eps as f32,
            weight_decay: self.weight_decay as f32,
            step_size: (lr / (1.0 - self.beta1.powi(t))) as f32,
            bias_correction2_sqrt: (1.0 - self.beta2.powi(t)).sqrt() as f32,
        }
    }
}

/// Adam state for one arena.
pub struct Adam {
    pub config: AdamConfig,
    m: FlatBuffer,
    v: FlatBuffer,
    steps: u64,
}

impl Adam {
    pub fn new(config: AdamConfig, arena: &ParamArena) -> Self {
        Adam {
            config,
            m: FlatBuffer::Host(vec![0.0; arena.len()]),
            v: FlatBuffer::Host(vec![0.0; arena.len()]),
            steps: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// First and second moments on the host, for checkpoints.
    pub fn moments(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((self.m.to_vec()?, self.v.to_vec()?))
    }

    /// Moves the moments to `device` (where their arena is).
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        let empty = || FlatBuffer::Host(Vec::new());
        self.m = std::mem::replace(&mut self.m, empty()).to_device(device)?;
        self.v = std::mem::replace(&mut self.v, empty()).to_device(device)?;
        Ok(())
    }

    /// Restores moments and step count saved from [`Self::moments`] and [`Self::steps`], on
    /// the device the moments are on.
    pub fn restore(&mut self, m: &[f32], v: &[f32], steps: u64) -> Result<()> {
        if m.len() != self.m.len() || v.len() != self.v.len() {
            return Err(Error::Params(format!(
                "saved Adam state has {} / {} moments, this network {}",
                m.len(),
                v.len(),
                self.m.len()
            )));
        }
        let device = self.m.device();
        self.m = FlatBuffer::Host(m.to_vec()).to_device(&device)?;
        self.v = FlatBuffer::Host(v.to_vec()).to_device(&device)?;
        self.steps = steps;
        Ok(())
    }

    /// One update of every parameter at learning rate `lr` (the schedule's current value):
    /// one fused pass over the arena, on the arena's device.
    pub fn step(&mut self, arena: &mut ParamArena, lr: f64) -> Result<()> {
        if arena.len() != self.m.len() {
            return Err(Error::Params(format!(
                "Adam was built for {} parameters, arena has {}",
                self.m.len(),
                arena.len()
            )));
        }
        if arena.device() != self.m.device() {
            return Err(Error::Params(format!(
                "Adam's moments are on {}, the parameters on {}",
                self.m.device().describe(),
                arena.device().describe()
            )));
        }
        self.steps += 1;
        let f = self.config.factors(lr, self.steps as i32);
        let (values, grads) = arena.buffers_mut();
        match (values, grads, &mut self.m, &mut self.v) {
            (
                FlatBuffer::Host(p),
                FlatBuffer::Host(g),
                FlatBuffer::Host(m),
                FlatBuffer::Host(v),
            ) => host_step(p, g, (m, v), &f),
            #[cfg(feature = "cuda")]
            (
                FlatBuffer::Cuda(p),
                FlatBuffer::Cuda(g),
                FlatBuffer::Cuda(m),
                FlatBuffer::Cuda(v),
            ) => {
                let backend = std::sync::Arc::clone(p.backend());
                backend
                    .launch_adam(p, g, (m, v), &f)
                    .map_err(Error::Device)?
            }
            #[cfg(feature = "cuda")]
            _ => unreachable!("devices checked above"),
        }
        Ok(())
    }
}

/// The CPU's fused pass, element by element as `kernels/adam.cu`.
fn host_step(p: &mut [f32], g: &[f32], (m, v): (&mut [f32], &mut [f32]), f: &AdamFactors) {
    let (b1, b2, eps, wd) = (f.beta1, f.beta2, f.eps, f.weight_decay);
    let (step_size, bc2_sqrt) = (f.step_size, f.bias_correction2_sqrt);
    p.par_iter_mut()
        .zip(g.par_iter())
        .zip(m.par_iter_mut().zip(v.par_iter_mut()))
        .for_each(|((p, &g), (m, v))| {
            let g = if wd != 0.0 { g + wd * *p } else { g };
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let denom = v.sqrt() / bc2_sqrt + eps;
            *p -= step_size * *m / denom;
        });
}

//! Adam with PyTorch's semantics (`torch.optim.Adam`, no amsgrad), as one fused pass over a
//! whole parameter arena. Its moment buffers are arenas of the same length.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

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
    m: Vec<f32>,
    v: Vec<f32>,
    steps: u64,
}

impl Adam {
    pub fn new(config: AdamConfig, arena: &ParamArena) -> Self {
        Adam {
            config,
            m: vec![0.0; arena.len()],
            v: vec![0.0; arena.len()],
            steps: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// First and second moments, for checkpoints.
    pub fn moments(&self) -> (&[f32], &[f32]) {
        (&self.m, &self.v)
    }

    /// Restores moments and step count saved from [`Self::moments`] and [`Self::steps`].
    pub fn restore(&mut self, m: &[f32], v: &[f32], steps: u64) -> Result<()> {
        if m.len() != self.m.len() || v.len() != self.v.len() {
            return Err(Error::Params(format!(
                "saved Adam state has {} / {} moments, this network {}",
                m.len(),
                v.len(),
                self.m.len()
            )));
        }
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        self.steps = steps;
        Ok(())
    }

    /// One update of every parameter at learning rate `lr` (the schedule's current value).
    pub fn step(&mut self, arena: &mut ParamArena, lr: f64) -> Result<()> {
        if arena.len() != self.m.len() {
            return Err(Error::Params(format!(
                "Adam was built for {} parameters, arena has {}",
                self.m.len(),
                arena.len()
            )));
        }
        self.steps += 1;
        let f = self.config.factors(lr, self.steps as i32);
        let (b1, b2, eps, wd) = (f.beta1, f.beta2, f.eps, f.weight_decay);
        let (step_size, bc2_sqrt) = (f.step_size, f.bias_correction2_sqrt);
        let (values, grads) = arena.values_and_grads_mut();
        values
            .par_iter_mut()
            .zip(grads.par_iter())
            .zip(self.m.par_iter_mut().zip(self.v.par_iter_mut()))
            .for_each(|((p, &g), (m, v))| {
                let g = if wd != 0.0 { g + wd * *p } else { g };
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p -= step_size * *m / denom;
            });
        Ok(())
    }
}

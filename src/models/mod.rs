//! The GAN models: one training step each, in the reference's exact order.

pub mod cyclegan;
pub mod image_pool;
pub mod pix2pix;

use serde::{Deserialize, Serialize};

use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::init::{InitKind, init_arena};
use crate::nn::nets::Network;
use crate::ops::loss::{LossKind, LossTarget};
use crate::optim::adam::{Adam, AdamConfig};

/// The reference's `--gan_mode` (wgangp is left out: the reference never applies its penalty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GanMode {
    /// BCE-with-logits against 1 / 0 (pix2pix's default).
    Vanilla,
    /// MSE against 1 / 0 (CycleGAN's default).
    Lsgan,
}

/// GANLoss: the mean loss of a discriminator's patch map against the real or fake label.
pub fn gan_loss(
    tape: &mut Tape,
    mode: GanMode,
    prediction: Var,
    target_is_real: bool,
) -> Result<Var> {
    let label = LossTarget::Const(if target_is_real { 1.0 } else { 0.0 });
    let kind = match mode {
        GanMode::Vanilla => LossKind::BceWithLogits,
        GanMode::Lsgan => LossKind::Mse,
    };
    tape.loss(kind, prediction, label)
}

/// A network with its optimizer: what a checkpoint stores per network.
pub struct Trained {
    /// The reference's model name (`G`, `D`, `G_A`, ...), used in file names.
    pub name: &'static str,
    pub net: Box<dyn Network>,
    pub adam: Adam,
}

impl Trained {
    /// Builds `net`, initialises it with the reference's scheme and attaches Adam.
    pub fn new<R: rand::Rng + ?Sized>(
        name: &'static str,
        mut net: Box<dyn Network>,
        init: (InitKind, f32),
        adam: AdamConfig,
        rng: &mut R,
    ) -> Trained {
        init_arena(net.arena_mut(), init.0, init.1, rng);
        let adam = Adam::new(adam, net.arena());
        Trained { name, net, adam }
    }

    /// Zero grads, add this backward pass's gradients, take one Adam step.
    pub fn step(&mut self, grads: &crate::autograd::Gradients, lr: f64) -> Result<()> {
        let arena = self.net.arena_mut();
        arena.zero_grad()?;
        arena.accumulate_grads(grads)?;
        self.adam.step(arena, lr)
    }

    /// Moves the parameters, gradients, batch norms' running statistics and Adam's moments
    /// to `device`.
    pub fn to_device(&mut self, device: &crate::device::Device) -> Result<()> {
        self.net.to_device(device)?;
        self.adam.to_device(device)
    }

    pub fn set_requires_grad(&mut self, on: bool) {
        self.net.arena_mut().set_requires_grad(on);
    }
}

/// Named scalar losses of one step, for logs.
pub type Losses = Vec<(&'static str, f32)>;

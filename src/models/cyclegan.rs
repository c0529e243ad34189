//! CycleGAN (reference `cycle_gan_model.py`): G_A: A -> B, G_B: B -> A, D_A judges B, D_B
//! judges A. Each step: the four generator passes; the G step with D frozen (GAN on the
//! un-pooled fakes, cycle and identity L1); then the D step on real vs pooled fakes.

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::image_pool::ImagePool;
use super::{GanMode, Losses, Trained, gan_loss};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::layers::Mode;
use crate::ops::loss::{LossKind, LossTarget};
use crate::tensor::Tensor;

/// CycleGAN's loss settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CycleLoss {
    pub gan_mode: GanMode,
    /// Cycle weights (reference 10 / 10).
    pub lambda_a: f32,
    pub lambda_b: f32,
    /// Identity weight relative to the cycle weights (reference 0.5).
    pub lambda_identity: f32,
}

impl Default for CycleLoss {
    fn default() -> Self {
        CycleLoss {
            gan_mode: GanMode::Lsgan,
            lambda_a: 10.0,
            lambda_b: 10.0,
            lambda_identity: 0.5,
        }
    }
}

/// The four networks and the two fake pools.
pub struct CycleNets {
    pub g_a: Trained,
    pub g_b: Trained,
    pub d_a: Trained,
    pub d_b: Trained,
    /// Earlier fake A images (for D_B) and fake B images (for D_A).
    pub pool_a: ImagePool,
    pub pool_b: ImagePool,
}

fn weighted_l1(tape: &mut Tape, x: Var, target: Var, weight: f32) -> Result<Var> {
    let l = tape.loss(LossKind::L1, x, LossTarget::Var(target))?;
    tape.scale(l, weight)
}

fn sum(tape: &mut Tape, terms: &[Var]) -> Result<Var> {
    let mut total = terms[0];
    for &t in &terms[1..] {
        total = tape.add(total, t)?;
    }
    Ok(total)
}

/// One CycleGAN step. Returns D_A, G_A, cycle_A, idt_A, D_B, G_B, cycle_B, idt_B.
pub fn train_step<R: Rng + ?Sized>(
    n: &mut CycleNets,
    loss: &CycleLoss,
    real_a: &Tensor,
    real_b: &Tensor,
    lr: f64,
    dropout_seed: u64,
    rng: &mut R,
) -> Result<Losses> {
    let mut tape = Tape::new();
    let a = tape.constant(real_a.clone());
    let b = tape.constant(real_b.clone());
    let train = Mode::train(dropout_seed);
    let fake_b = n.g_a.net.forward(&mut tape, a, &train)?;
    let rec_a = n.g_b.net.forward(&mut tape, fake_b, &train)?;
    let fake_a = n.g_b.net.forward(&mut tape, b, &train)?;
    let rec_b = n.g_a.net.forward(&mut tape, fake_a, &train)?;

    // G step, discriminators frozen.
    n.d_a.set_requires_grad(false);
    n.d_b.set_requires_grad(false);
    let mut terms = Vec::new();
    let (idt_a, idt_b) = if loss.lambda_identity > 0.0 {
        let idt_a = n.g_a.net.forward(&mut tape, b, &train)?;
        let idt_b = n.g_b.net.forward(&mut tape, a, &train)?;
        let la = weighted_l1(&mut tape, idt_a, b, loss.lambda_b * loss.lambda_identity)?;
        let lb = weighted_l1(&mut tape, idt_b, a, loss.lambda_a * loss.lambda_identity)?;
        terms.extend([la, lb]);
        (Some(la), Some(lb))
    } else {
        (None, None)
    };
    let pred = n.d_a.net.forward(&mut tape, fake_b, &train)?;
    let g_a = gan_loss(&mut tape, loss.gan_mode, pred, true)?;
    let pred = n.d_b.net.forward(&mut tape, fake_a, &train)?;
    let g_b = gan_loss(&mut tape, loss.gan_mode, pred, true)?;
    let cycle_a = weighted_l1(&mut tape, rec_a, a, loss.lambda_a)?;
    let cycle_b = weighted_l1(&mut tape, rec_b, b, loss.lambda_b)?;
    terms.extend([g_a, g_b, cycle_a, cycle_b]);
    let g_loss = sum(&mut tape, &terms)?;
    let grads = tape.backward(g_loss)?;
    n.g_a.step(&grads, lr)?;
    n.g_b.step(&grads, lr)?;

    // D step on real vs pooled (detached) fakes made before the G step.
    n.d_a.set_requires_grad(true);
    n.d_b.set_requires_grad(true);
    let pooled_b = n.pool_b.query(tape.value(fake_b), rng)?;
    let pooled_a = n.pool_a.query(tape.value(fake_a), rng)?;
    let d_loss = |tape: &mut Tape, d: &mut Trained, real: Var, fake: Tensor| -> Result<Var> {
        let pred_real = d.net.forward(tape, real, &train)?;
        let l_real = gan_loss(tape, loss.gan_mode, pred_real, true)?;
        let f = tape.constant(fake);
        let pred_fake = d.net.forward(tape, f, &train)?;
        let l_fake = gan_loss(tape, loss.gan_mode, pred_fake, false)?;
        let total = tape.add(l_real, l_fake)?;
        tape.scale(total, 0.5)
    };
    let d_a = d_loss(&mut tape, &mut n.d_a, b, pooled_b)?;
    let d_b = d_loss(&mut tape, &mut n.d_b, a, pooled_a)?;
    let both = tape.add(d_a, d_b)?;
    let grads = tape.backward(both)?;
    n.d_a.step(&grads, lr)?;
    n.d_b.step(&grads, lr)?;

    let value = |v: Option<Var>| v.map_or(Ok(0.0), |v| tape.value(v).item());
    Ok(vec![
        ("D_A", value(Some(d_a))?),
        ("G_A", value(Some(g_a))?),
        ("cycle_A", value(Some(cycle_a))?),
        ("idt_A", value(idt_a)?),
        ("D_B", value(Some(d_b))?),
        ("G_B", value(Some(g_b))?),
        ("cycle_B", value(Some(cycle_b))?),
        ("idt_B", value(idt_b)?),
    ])
}

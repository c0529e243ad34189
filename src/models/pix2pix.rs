//! pix2pix (reference `pix2pix_model.py`): conditional GAN with a U-Net generator and a
//! PatchGAN on concat(A, B). Each step: G forward; D on concat(A, fake) and concat(A, real)
//! in separate passes, D step; then G's GAN loss on the updated D plus lambda_L1 x L1, G step.

use serde::{Deserialize, Serialize};

use super::{GanMode, Losses, Trained, gan_loss};
use crate::autograd::Tape;
use crate::error::Result;
use crate::nn::layers::Mode;
use crate::ops::loss::{LossKind, LossTarget};
use crate::tensor::Tensor;

/// pix2pix's loss settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pix2PixLoss {
    pub gan_mode: GanMode,
    /// Weight of the L1 term (reference default 100).
    pub lambda_l1: f32,
}

impl Default for Pix2PixLoss {
    fn default() -> Self {
        Pix2PixLoss {
            gan_mode: GanMode::Vanilla,
            lambda_l1: 100.0,
        }
    }
}

/// One pix2pix training step on a batch. `dropout_seed` makes the generator's dropout masks
/// reproducible. Returns G_GAN, G_L1, D_real, D_fake.
pub fn train_step(
    g: &mut Trained,
    d: &mut Trained,
    loss: &Pix2PixLoss,
    real_a: &Tensor,
    real_b: &Tensor,
    lr: f64,
    dropout_seed: u64,
) -> Result<Losses> {
    let mut tape = Tape::new();
    let a = tape.constant(real_a.clone());
    let b = tape.constant(real_b.clone());
    let train = Mode::train(dropout_seed);
    let fake_b = g.net.forward(&mut tape, a, &train)?;

    // D step: fake (detached) and real pairs in separate passes.
    d.set_requires_grad(true);
    let fake_detached = tape.detach(fake_b);
    let fake_ab = tape.concat(&[a, fake_detached])?;
    let pred_fake = d.net.forward(&mut tape, fake_ab, &train)?;
    let d_fake = gan_loss(&mut tape, loss.gan_mode, pred_fake, false)?;
    let real_ab = tape.concat(&[a, b])?;
    let pred_real = d.net.forward(&mut tape, real_ab, &train)?;
    let d_real = gan_loss(&mut tape, loss.gan_mode, pred_real, true)?;
    let d_sum = tape.add(d_fake, d_real)?;
    let d_loss = tape.scale(d_sum, 0.5)?;
    let grads = tape.backward(d_loss)?;
    d.step(&grads, lr)?;

    // G step against the updated, frozen D.
    d.set_requires_grad(false);
    let fake_ab = tape.concat(&[a, fake_b])?;
    let pred = d.net.forward(&mut tape, fake_ab, &train)?;
    let g_gan = gan_loss(&mut tape, loss.gan_mode, pred, true)?;
    let l1 = tape.loss(LossKind::L1, fake_b, LossTarget::Var(b))?;
    let g_l1 = tape.scale(l1, loss.lambda_l1)?;
    let g_loss = tape.add(g_gan, g_l1)?;
    let grads = tape.backward(g_loss)?;
    g.step(&grads, lr)?;
    d.set_requires_grad(true);

    let value = |v| tape.value(v).item();
    Ok(vec![
        ("G_GAN", value(g_gan)?),
        ("G_L1", value(g_l1)?),
        ("D_real", value(d_real)?),
        ("D_fake", value(d_fake)?),
    ])
}

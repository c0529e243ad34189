//! The PatchGAN discriminator (reference `NLayerDiscriminator`, and its 3D version in the
//! 3D CycleGAN): k4 convs, stride 2 for the first `n_layers`, then two stride-1 convs;
//! LeakyReLU 0.2; raw logits out. Parameters `model.<i>` (identity norms still take their
//! index, as in the reference).

use super::{DiscriminatorConfig, Network};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::layers::{Conv, Mode, Norm, kernel};
use crate::nn::params::ParamArena;
use crate::ops::conv::ConvOptions;
use crate::ops::elementwise::Activation;

pub struct NLayerDiscriminator {
    arena: ParamArena,
    first: Conv,
    /// Conv, norm pairs followed by LeakyReLU.
    middle: Vec<(Conv, Norm)>,
    last: Conv,
}

impl NLayerDiscriminator {
    /// `dims` spatial dimensions (2, or 3 for volumes).
    pub fn new(cfg: &DiscriminatorConfig, n_layers: usize, dims: usize) -> NLayerDiscriminator {
        let mut arena = ParamArena::new();
        let (ndf, ub, k) = (cfg.ndf, cfg.norm.conv_bias(), kernel(4, dims));
        let (s2, s1) = (ConvOptions::new(2, 1), ConvOptions::new(1, 1));
        let first = Conv::new(
            &mut arena,
            "model.0",
            cfg.input_nc,
            ndf,
            &k,
            s2,
            true,
            false,
        );
        let mut middle = Vec::new();
        let (mut mult, mut idx) = (1, 2);
        for n in 1..=n_layers {
            let prev = mult;
            mult = (1 << n).min(8);
            let opts = if n < n_layers { s2 } else { s1 };
            let conv = Conv::new(
                &mut arena,
                &format!("model.{idx}"),
                ndf * prev,
                ndf * mult,
                &k,
                opts,
                ub,
                false,
            );
            let norm = Norm::new(
                &mut arena,
                &format!("model.{}", idx + 1),
                cfg.norm,
                ndf * mult,
            );
            middle.push((conv, norm));
            idx += 3;
        }
        let last = Conv::new(
            &mut arena,
            &format!("model.{idx}"),
            ndf * mult,
            1,
            &k,
            s1,
            true,
            false,
        );
        NLayerDiscriminator {
            arena,
            first,
            middle,
            last,
        }
    }
}

impl Network for NLayerDiscriminator {
    fn arena(&self) -> &ParamArena {
        &self.arena
    }
    fn arena_mut(&mut self) -> &mut ParamArena {
        &mut self.arena
    }
    fn forward(&mut self, tape: &mut Tape, x: Var, mode: &Mode) -> Result<Var> {
        let arena = &self.arena;
        let h = self.first.forward(tape, arena, x)?;
        let mut h = tape.leaky_relu(h, 0.2)?;
        for (conv, norm) in &mut self.middle {
            let y = conv.forward(tape, arena, h)?;
            h = norm.forward(tape, arena, y, mode, Some(Activation::LeakyRelu(0.2)))?;
        }
        self.last.forward(tape, arena, h)
    }
    fn norms_mut(&mut self) -> Vec<&mut Norm> {
        self.middle.iter_mut().map(|(_, n)| n).collect()
    }
}

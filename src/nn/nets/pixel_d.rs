//! The 1x1 PatchGAN (reference `PixelDiscriminator`, parameters `net.<i>`).

use super::{DiscriminatorConfig, Network};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::layers::{Conv, Mode, Norm, kernel};
use crate::nn::params::ParamArena;
use crate::ops::conv::ConvOptions;
use crate::ops::elementwise::Activation;

pub struct PixelDiscriminator {
    arena: ParamArena,
    convs: [Conv; 3],
    norm: Norm,
}

impl PixelDiscriminator {
    pub fn new(cfg: &DiscriminatorConfig) -> PixelDiscriminator {
        let mut arena = ParamArena::new();
        let (ndf, ub) = (cfg.ndf, cfg.norm.conv_bias());
        let k1 = ConvOptions::new(1, 0);
        let convs = [
            Conv::new(
                &mut arena,
                "net.0",
                cfg.input_nc,
                ndf,
                &kernel(1, 2),
                k1,
                true,
                false,
            ),
            Conv::new(
                &mut arena,
                "net.2",
                ndf,
                2 * ndf,
                &kernel(1, 2),
                k1,
                ub,
                false,
            ),
            Conv::new(
                &mut arena,
                "net.5",
                2 * ndf,
                1,
                &kernel(1, 2),
                k1,
                ub,
                false,
            ),
        ];
        let norm = Norm::new(&mut arena, "net.3", cfg.norm, 2 * ndf);
        PixelDiscriminator { arena, convs, norm }
    }
}

impl Network for PixelDiscriminator {
    fn arena(&self) -> &ParamArena {
        &self.arena
    }
    fn arena_mut(&mut self) -> &mut ParamArena {
        &mut self.arena
    }
    fn forward(&mut self, tape: &mut Tape, x: Var, mode: &Mode) -> Result<Var> {
        let arena = &self.arena;
        let h = self.convs[0].forward(tape, arena, x)?;
        let h = tape.leaky_relu(h, 0.2)?;
        let h = self.convs[1].forward(tape, arena, h)?;
        let h = self
            .norm
            .forward(tape, arena, h, mode, Some(Activation::LeakyRelu(0.2)))?;
        self.convs[2].forward(tape, arena, h)
    }
    fn norms_mut(&mut self) -> Vec<&mut Norm> {
        vec![&mut self.norm]
    }
}

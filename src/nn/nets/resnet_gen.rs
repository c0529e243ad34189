//! The ResNet generator (reference `ResnetGenerator`, reflection padding): a 7x7 stem, two
//! stride-2 downsamplings, `n_blocks` residual blocks, two transposed upsamplings and a 7x7
//! head with tanh. Parameters are named `model.<i>` and `model.<i>.conv_block.<j>` as in the
//! reference (dropout shifts the second conv of a block from index 5 to 6). The reference's
//! padding layers before the stem, head and block convs (`model.0`, `conv_block.0`, ...)
//! hold no parameters; here those convs pad themselves (`ConvOptions::pad_mode`).

use super::{GeneratorConfig, Network};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::layers::{Conv, Mode, Norm, kernel};
use crate::nn::params::ParamArena;
use crate::ops::conv::ConvOptions;
use crate::ops::elementwise::Activation;
use crate::ops::pad::PadMode;

/// A conv followed by a norm (and, where the network says, a ReLU).
struct ConvNorm {
    conv: Conv,
    norm: Norm,
}

impl ConvNorm {
    /// conv, norm, then the ReLU when `relu` (fused with the norm).
    fn forward(
        &mut self,
        tape: &mut Tape,
        arena: &ParamArena,
        x: Var,
        mode: &Mode,
        relu: bool,
    ) -> Result<Var> {
        let h = self.conv.forward(tape, arena, x)?;
        self.norm
            .forward(tape, arena, h, mode, relu.then_some(Activation::Relu))
    }
}

struct ResidualBlock {
    first: ConvNorm,
    second: ConvNorm,
    dropout: bool,
}

pub struct ResnetGenerator {
    arena: ParamArena,
    stem: ConvNorm,
    down: [ConvNorm; 2],
    blocks: Vec<ResidualBlock>,
    up: [ConvNorm; 2],
    head: Conv,
}

fn conv_norm(
    arena: &mut ParamArena,
    cfg: &GeneratorConfig,
    idx: (&str, &str),
    ch: (usize, usize),
    k: &[usize],
    opts: ConvOptions,
    transposed: bool,
) -> ConvNorm {
    ConvNorm {
        conv: Conv::new(
            arena,
            idx.0,
            ch.0,
            ch.1,
            k,
            opts,
            cfg.norm.conv_bias(),
            transposed,
        ),
        norm: Norm::new(arena, idx.1, cfg.norm, ch.1),
    }
}

impl ResnetGenerator {
    /// `dims` spatial dimensions (2, or 3 for the volumetric CycleGAN) and the padding of
    /// the stem, head and residual blocks (reflect, or replicate as the 3D reference does).
    pub fn new(
        cfg: &GeneratorConfig,
        n_blocks: usize,
        dims: usize,
        pad: PadMode,
    ) -> ResnetGenerator {
        let (k7, k3) = (kernel(7, dims), kernel(3, dims));
        let mut arena = ParamArena::new();
        let a = &mut arena;
        let ngf = cfg.ngf;
        let s2 = ConvOptions::new(2, 1);
        let up_opts = s2.with_output_padding(1);
        let (p3, p1) = (
            ConvOptions::new(1, 3).with_pad_mode(pad),
            ConvOptions::new(1, 1).with_pad_mode(pad),
        );
        let stem = conv_norm(
            a,
            cfg,
            ("model.1", "model.2"),
            (cfg.input_nc, ngf),
            &k7,
            p3,
            false,
        );
        let down = [
            conv_norm(
                a,
                cfg,
                ("model.4", "model.5"),
                (ngf, 2 * ngf),
                &k3,
                s2,
                false,
            ),
            conv_norm(
                a,
                cfg,
                ("model.7", "model.8"),
                (2 * ngf, 4 * ngf),
                &k3,
                s2,
                false,
            ),
        ];
        let blocks = (0..n_blocks)
            .map(|i| {
                let b = format!("model.{}.conv_block", 10 + i);
                let (c2, n2) = if cfg.dropout { (6, 7) } else { (5, 6) };
                ResidualBlock {
                    first: conv_norm(
                        a,
                        cfg,
                        (&format!("{b}.1"), &format!("{b}.2")),
                        (4 * ngf, 4 * ngf),
                        &k3,
                        p1,
                        false,
                    ),
                    second: conv_norm(
                        a,
                        cfg,
                        (&format!("{b}.{c2}"), &format!("{b}.{n2}")),
                        (4 * ngf, 4 * ngf),
                        &k3,
                        p1,
                        false,
                    ),
                    dropout: cfg.dropout,
                }
            })
            .collect();
        let u = 10 + n_blocks;
        let up = [
            conv_norm(
                a,
                cfg,
                (&format!("model.{u}"), &format!("model.{}", u + 1)),
                (4 * ngf, 2 * ngf),
                &k3,
                up_opts,
                true,
            ),
            conv_norm(
                a,
                cfg,
                (&format!("model.{}", u + 3), &format!("model.{}", u + 4)),
                (2 * ngf, ngf),
                &k3,
                up_opts,
                true,
            ),
        ];
        let head = Conv::new(
            a,
            &format!("model.{}", u + 7),
            ngf,
            cfg.output_nc,
            &k7,
            p3,
            true,
            false,
        );
        ResnetGenerator {
            arena,
            stem,
            down,
            blocks,
            up,
            head,
        }
    }
}

impl Network for ResnetGenerator {
    fn arena(&self) -> &ParamArena {
        &self.arena
    }
    fn arena_mut(&mut self) -> &mut ParamArena {
        &mut self.arena
    }
    fn forward(&mut self, tape: &mut Tape, x: Var, mode: &Mode) -> Result<Var> {
        let arena = &self.arena;
        // Inference keeps only the live activations: after each layer, the values of the
        // earlier ones are released (nothing happens on a tape that records).
        let scope = tape.mark();
        let mut h = self.stem.forward(tape, arena, x, mode, true)?;
        tape.release_since(scope, &[h]);
        for d in &mut self.down {
            h = d.forward(tape, arena, h, mode, true)?;
            tape.release_since(scope, &[h]);
        }
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let mut y = b.first.forward(tape, arena, h, mode, true)?;
            if let (true, Some(seed)) = (b.dropout, mode.dropout_seed_for(i as u64)) {
                y = tape.dropout(y, 0.5, seed, true)?;
            }
            tape.release_since(scope, &[h, y]);
            let y = b.second.forward(tape, arena, y, mode, false)?;
            // No activation after the residual addition.
            h = tape.add(h, y)?;
            tape.release_since(scope, &[h]);
        }
        for u in &mut self.up {
            h = u.forward(tape, arena, h, mode, true)?;
            tape.release_since(scope, &[h]);
        }
        let h = self.head.forward(tape, arena, h)?;
        tape.release_since(scope, &[h]);
        tape.tanh(h)
    }
    fn norms_mut(&mut self) -> Vec<&mut Norm> {
        let mut out = vec![&mut self.stem.norm];
        out.extend(self.down.iter_mut().map(|d| &mut d.norm));
        for b in &mut self.blocks {
            out.push(&mut b.first.norm);
            out.push(&mut b.second.norm);
        }
        out.extend(self.up.iter_mut().map(|u| &mut u.norm));
        out
    }
}

//! The U-Net generator (reference `UnetGenerator`): blocks nested from the outside in, each
//! a down conv, the inner block, an up (transposed) conv, and a skip concatenation
//! `[x, block(x)]`. Parameter names follow the reference's nesting:
//! `model.model.<i>` for the outermost block, `model.model.1.model.<i>` one level in, then
//! `.model.3` per further level.

use super::{GeneratorConfig, Network};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::nn::layers::{Conv, Mode, Norm, kernel};
use crate::nn::params::ParamArena;
use crate::ops::conv::ConvOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Outermost,
    Middle,
    Innermost,
}

struct Block {
    level: Level,
    down: Conv,
    down_norm: Option<Norm>,
    up: Conv,
    up_norm: Option<Norm>,
    dropout: bool,
}

pub struct UnetGenerator {
    arena: ParamArena,
    /// Outermost first.
    blocks: Vec<Block>,
}

impl UnetGenerator {
    pub fn new(cfg: &GeneratorConfig, num_downs: usize) -> UnetGenerator {
        assert!(
            num_downs >= 5,
            "a U-Net needs at least 5 downsamplings (the reference's fixed outer blocks)"
        );
        let mut arena = ParamArena::new();
        let ngf = cfg.ngf;
        let ub = cfg.norm.conv_bias();
        let k4 = ConvOptions::new(2, 1);
        let mut blocks = Vec::new();
        let mut prefix = String::from("model.model");
        for depth in 0..num_downs {
            // (outer_nc, inner_nc) of this level, outermost first.
            let (outer, inner) = match depth {
                0 => (ngf, ngf),
                1 => (ngf, 2 * ngf),
                2 => (2 * ngf, 4 * ngf),
                3 => (4 * ngf, 8 * ngf),
                _ => (8 * ngf, 8 * ngf),
            };
            let level = match depth {
                0 => Level::Outermost,
                d if d == num_downs - 1 => Level::Innermost,
                _ => Level::Middle,
            };
            let block = match level {
                Level::Outermost => Block {
                    level,
                    down: Conv::new(
                        &mut arena,
                        &format!("{prefix}.0"),
                        cfg.input_nc,
                        ngf,
                        &kernel(4, 2),
                        k4,
                        ub,
                        false,
                    ),
                    down_norm: None,
                    up: Conv::new(
                        &mut arena,
                        &format!("{prefix}.3"),
                        2 * ngf,
                        cfg.output_nc,
                        &kernel(4, 2),
                        k4,
                        true,
                        true,
                    ),
                    up_norm: None,
                    dropout: false,
                },
                Level::Innermost => Block {
                    level,
                    down: Conv::new(
                        &mut arena,
                        &format!("{prefix}.1"),
                        outer,
                        inner,
                        &kernel(4, 2),
                        k4,
                        ub,
                        false,
                    ),
                    down_norm: None,
                    up: Conv::new(
                        &mut arena,
                        &format!("{prefix}.3"),
                        inner,
                        outer,
                        &kernel(4, 2),
                        k4,
                        ub,
                        true,
                    ),
                    up_norm: Some(Norm::new(
                        &mut arena,
                        &format!("{prefix}.4"),
                        cfg.norm,
                        outer,
                    )),
                    dropout: false,
                },
                Level::Middle => Block {
                    level,
                    down: Conv::new(
                        &mut arena,
                        &format!("{prefix}.1"),
                        outer,
                        inner,
                        &kernel(4, 2),
                        k4,
                        ub,
                        false,
                    ),
                    down_norm: Some(Norm::new(
                        &mut arena,
                        &format!("{prefix}.2"),
                        cfg.norm,
                        inner,
                    )),
                    up: Conv::new(
                        &mut arena,
                        &format!("{prefix}.5"),
                        2 * inner,
                        outer,
                        &kernel(4, 2),
                        k4,
                        ub,
                        true,
                    ),
                    up_norm: Some(Norm::new(
                        &mut arena,
                        &format!("{prefix}.6"),
                        cfg.norm,
                        outer,
                    )),
                    // The num_downs - 5 innermost middle blocks (512 -> 512).
                    dropout: cfg.dropout && depth >= 4,
                },
            };
            blocks.push(block);
            prefix.push_str(if depth == 0 { ".1.model" } else { ".3.model" });
        }
        // Parameter registration order above is outer-to-inner, down before up; reorder to
        // the reference's state_dict order is not needed: names carry the identity.
        UnetGenerator { arena, blocks }
    }
}

/// Forward of `blocks[0]`, whose inner blocks follow it in `blocks`; `depth` numbers dropout
/// layers for their seeds.
fn block_forward(
    blocks: &mut [Block],
    arena: &ParamArena,
    tape: &mut Tape,
    depth: usize,
    x: Var,
    mode: &Mode,
) -> Result<Var> {
    let (head, inner) = blocks.split_at_mut(1);
    let b = &mut head[0];
    let h = if b.level == Level::Outermost {
        x
    } else {
        tape.leaky_relu(x, 0.2)?
    };
    let mut h = b.down.forward(tape, arena, h)?;
    if let Some(n) = b.down_norm.as_mut() {
        h = n.forward(tape, arena, h, mode, None)?;
    }
    if b.level != Level::Innermost {
        h = block_forward(inner, arena, tape, depth + 1, h, mode)?;
    }
    let h = tape.relu(h)?;
    let mut h = b.up.forward(tape, arena, h)?;
    if b.level == Level::Outermost {
        return tape.tanh(h);
    }
    if let Some(n) = b.up_norm.as_mut() {
        h = n.forward(tape, arena, h, mode, None)?;
    }
    if let (true, Some(seed)) = (b.dropout, mode.dropout_seed_for(depth as u64)) {
        h = tape.dropout(h, 0.5, seed, true)?;
    }
    // Skip first, then the block's path, as the reference concatenates.
    tape.concat(&[x, h])
}

impl Network for UnetGenerator {
    fn arena(&self) -> &ParamArena {
        &self.arena
    }
    fn arena_mut(&mut self) -> &mut ParamArena {
        &mut self.arena
    }
    fn forward(&mut self, tape: &mut Tape, x: Var, mode: &Mode) -> Result<Var> {
        block_forward(&mut self.blocks, &self.arena, tape, 0, x, mode)
    }
    fn norms_mut(&mut self) -> Vec<&mut Norm> {
        self.blocks
            .iter_mut()
            .flat_map(|b| b.down_norm.iter_mut().chain(b.up_norm.iter_mut()))
            .collect()
    }
}

//! Layers with PyTorch-named parameters: a conv (or transposed conv) and a norm layer. Names
//! follow the reference's state_dict keys (`model.1.weight`, ...), so checkpoints convert
//! one to one.

use serde::{Deserialize, Serialize};

use super::params::{ParamArena, ParamId, ParamRole};
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::conv::ConvOptions;
use crate::ops::elementwise::Activation;
use crate::ops::norm::{Affine, RunningStats};

/// The reference's `--norm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// BatchNorm2d: affine, running statistics.
    Batch,
    /// InstanceNorm2d without affine parameters or running statistics.
    Instance,
    /// Identity.
    None,
}

impl NormKind {
    /// The reference's bias rule: convs followed by a norm have a bias only under instance
    /// norm (and, a quirk kept on purpose, not under `none` either).
    pub fn conv_bias(self) -> bool {
        self == NormKind::Instance
    }
}

/// A cubic kernel of side `k` in `dims` (2 or 3) spatial dimensions.
pub fn kernel(k: usize, dims: usize) -> Vec<usize> {
    vec![k; dims]
}

/// How a forward pass treats batch norm and dropout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Batch norm normalises with the batch's statistics (training; the reference's test
    /// default) instead of its running statistics (`.eval()`).
    pub batch_stats: bool,
    /// Batch norm updates its running statistics (training only).
    pub update_stats: bool,
    /// Dropout active, with masks derived from this seed; None turns dropout off.
    pub dropout_seed: Option<u64>,
}

impl Mode {
    /// Training: batch statistics, running-statistics updates, dropout from `seed`.
    pub fn train(seed: u64) -> Mode {
        Mode {
            batch_stats: true,
            update_stats: true,
            dropout_seed: Some(seed),
        }
    }

    /// Inference with batch statistics or running statistics, dropout off.
    pub fn inference(batch_stats: bool) -> Mode {
        Mode {
            batch_stats,
            update_stats: false,
            dropout_seed: None,
        }
    }

    /// The dropout seed of the `index`-th dropout layer of a network.
    pub fn dropout_seed_for(&self, index: u64) -> Option<u64> {
        self.dropout_seed.map(|s| {
            s.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(index.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        })
    }
}

/// A 2D or 3D conv or transposed conv, weight `[out, in, k...]` (transposed: `[in, out, k...]`).
#[derive(Clone, Debug)]
pub struct Conv {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub opts: ConvOptions,
    pub transposed: bool,
}

impl Conv {
    /// Registers `<name>.weight` (and `<name>.bias`) in `arena`.
    #[allow(clippy::too_many_arguments)] // mirrors nn.Conv2d's constructor
    pub fn new(
        arena: &mut ParamArena,
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: &[usize],
        opts: ConvOptions,
        bias: bool,
        transposed: bool,
    ) -> Conv {
        let mut shape = if transposed {
            vec![c_in, c_out]
        } else {
            vec![c_out, c_in]
        };
        shape.extend_from_slice(kernel);
        let weight = arena.add(&format!("{name}.weight"), shape, ParamRole::Weight);
        let bias = bias.then(|| arena.add(&format!("{name}.bias"), [c_out], ParamRole::Bias));
        Conv {
            weight,
            bias,
            opts,
            transposed,
        }
    }

    pub fn forward(&self, tape: &mut Tape, arena: &ParamArena, x: Var) -> Result<Var> {
        let w = tape.param(arena, self.weight)?;
        let b = self.bias.map(|b| tape.param(arena, b)).transpose()?;
        if self.transposed {
            tape.conv_transpose(x, w, b, self.opts)
        } else {
            tape.conv(x, w, b, self.opts)
        }
    }
}

/// A norm layer of the reference's kinds.
#[derive(Clone, Debug)]
pub struct Norm {
    pub name: String,
    pub kind: NormKind,
    /// Batch norm's `weight` and `bias`.
    pub affine: Option<(ParamId, ParamId)>,
    /// Batch norm's running statistics (`running_mean`, `running_var`).
    pub stats: Option<RunningStats>,
}

impl Norm {
    pub fn new(arena: &mut ParamArena, name: &str, kind: NormKind, channels: usize) -> Norm {
        let (affine, stats) = match kind {
            NormKind::Batch => (
                Some((
                    arena.add(&format!("{name}.weight"), [channels], ParamRole::NormScale),
                    arena.add(&format!("{name}.bias"), [channels], ParamRole::Bias),
                )),
                Some(RunningStats::new(channels)),
            ),
            NormKind::Instance | NormKind::None => (None, None),
        };
        Norm {
            name: name.to_string(),
            kind,
            affine,
            stats,
        }
    }

    /// The norm, then `act` when given, fused into one op (the reference's norm layers are
    /// followed by a ReLU or LeakyReLU in most places).
    pub fn forward(
        &mut self,
        tape: &mut Tape,
        arena: &ParamArena,
        x: Var,
        mode: &Mode,
        act: Option<Activation>,
    ) -> Result<Var> {
        let affine = match self.affine {
            Some((g, b)) => Some(Affine {
                gamma: tape.param(arena, g)?,
                beta: tape.param(arena, b)?,
            }),
            None => None,
        };
        match self.kind {
            NormKind::None => match act {
                Some(act) => tape.activation(x, act),
                None => Ok(x),
            },
            NormKind::Instance => tape.instance_norm_then(x, affine, act),
            NormKind::Batch => {
                let stats = self
                    .stats
                    .as_mut()
                    .expect("batch norm has running statistics");
                if mode.batch_stats && !mode.update_stats {
                    // Batch statistics without touching the running ones.
                    let mut scratch = stats.clone();
                    tape.batch_norm_then(x, affine, &mut scratch, true, act)
                } else {
                    tape.batch_norm_then(x, affine, stats, mode.batch_stats, act)
                }
            }
        }
    }
}

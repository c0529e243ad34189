//! The reference networks (`models/networks.py`): U-Net and ResNet generators, PatchGAN and
//! pixel discriminators, built from a serialisable config.

pub mod patchgan;
pub mod pixel_d;
pub mod resnet_gen;
pub mod unet;

use serde::{Deserialize, Serialize};

use super::layers::{Mode, Norm, NormKind};
use super::params::ParamArena;
use crate::autograd::{Tape, Var};
use crate::error::Result;
use crate::ops::pad::PadMode;

/// What every network offers the training loops, checkpoints and inference.
pub trait Network: Send {
    fn arena(&self) -> &ParamArena;
    fn arena_mut(&mut self) -> &mut ParamArena;
    /// Records the forward pass of a batch `x` on `tape`.
    fn forward(&mut self, tape: &mut Tape, x: Var, mode: &Mode) -> Result<Var>;
    /// The norm layers, for their running statistics.
    fn norms_mut(&mut self) -> Vec<&mut Norm>;

    /// Moves the parameters, their gradients and the batch norms' running statistics to
    /// `device`, where the network then runs.
    fn to_device(&mut self, device: &crate::device::Device) -> Result<()> {
        self.arena_mut().to_device(device)?;
        for norm in self.norms_mut() {
            if let Some(stats) = norm.stats.as_mut() {
                stats.to_device(device)?;
            }
        }
        Ok(())
    }
}

/// Generator architectures (`--netG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorArch {
    /// U-Net with `num_downs` downsamplings: unet_128 = 7, unet_256 = 8; input sides must
    /// be multiples of 2^num_downs.
    Unet { num_downs: usize },
    /// ResNet generator with `n_blocks` residual blocks (6 or 9); sides multiples of 4.
    Resnet { n_blocks: usize },
    /// The 3D ResNet generator of the volumetric CycleGAN (7x7x7 stem and head, k3 convs),
    /// with replication padding as the reference (`replicate`) or reflection.
    Resnet3d { n_blocks: usize, replicate: bool },
}

impl GeneratorArch {
    /// Parses the reference's names (`unet_256`, `resnet_9blocks`, ...; also `unet_64`...).
    pub fn parse(name: &str) -> std::result::Result<Self, String> {
        let unet_size = name
            .strip_prefix("unet_")
            .and_then(|s| s.parse::<usize>().ok());
        if let Some(size) = unet_size.filter(|s| s.is_power_of_two() && *s >= 32) {
            return Ok(GeneratorArch::Unet {
                num_downs: size.trailing_zeros() as usize,
            });
        }
        if let Some(rest) = name.strip_prefix("resnet3d_") {
            let (blocks, pad) = rest
                .split_once('_')
                .map_or((rest, "replicate"), |(b, p)| (b, p));
            let n = blocks.strip_suffix("blocks").and_then(|b| b.parse().ok());
            if let (Some(n_blocks), "replicate" | "reflect") = (n, pad) {
                return Ok(GeneratorArch::Resnet3d {
                    n_blocks,
                    replicate: pad == "replicate",
                });
            }
        }
        if let Some(n) = name
            .strip_prefix("resnet_")
            .and_then(|s| s.strip_suffix("blocks"))
            .and_then(|s| s.parse().ok())
        {
            return Ok(GeneratorArch::Resnet { n_blocks: n });
        }
        Err(format!(
            "unknown generator {name:?}: use unet_128, unet_256 (any unet_<2^k>) or resnet_<n>blocks"
        ))
    }

    pub fn name(&self) -> String {
        match self {
            GeneratorArch::Unet { num_downs } => format!("unet_{}", 1usize << num_downs),
            GeneratorArch::Resnet { n_blocks } => format!("resnet_{n_blocks}blocks"),
            GeneratorArch::Resnet3d {
                n_blocks,
                replicate: true,
            } => format!("resnet3d_{n_blocks}blocks"),
            GeneratorArch::Resnet3d {
                n_blocks,
                replicate: false,
            } => format!("resnet3d_{n_blocks}blocks_reflect"),
        }
    }

    /// Input sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        match self {
            GeneratorArch::Unet { num_downs } => 1 << num_downs,
            GeneratorArch::Resnet { .. } | GeneratorArch::Resnet3d { .. } => 4,
        }
    }

    /// 2 for slice networks, 3 for volumetric ones.
    pub fn spatial_dims(&self) -> usize {
        match self {
            GeneratorArch::Resnet3d { .. } => 3,
            _ => 2,
        }
    }
}

/// A generator's full description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    pub arch: GeneratorArch,
    pub input_nc: usize,
    pub output_nc: usize,
    pub ngf: usize,
    pub norm: NormKind,
    pub dropout: bool,
}

/// Discriminator architectures (`--netD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscriminatorArch {
    /// PatchGAN with `n_layers` (basic = 3).
    NLayer { n_layers: usize },
    /// The 3D PatchGAN (k4x4x4, receptive field 70 at n_layers 3).
    NLayer3d { n_layers: usize },
    /// 1x1 PatchGAN.
    Pixel,
}

/// A discriminator's full description.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    pub arch: DiscriminatorArch,
    pub input_nc: usize,
    pub ndf: usize,
    pub norm: NormKind,
}

pub fn build_generator(cfg: &GeneratorConfig) -> Box<dyn Network> {
    match cfg.arch {
        GeneratorArch::Unet { num_downs } => Box::new(unet::UnetGenerator::new(cfg, num_downs)),
        GeneratorArch::Resnet { n_blocks } => Box::new(resnet_gen::ResnetGenerator::new(
            cfg,
            n_blocks,
            2,
            PadMode::Reflect,
        )),
        GeneratorArch::Resnet3d {
            n_blocks,
            replicate,
        } => {
            let pad = if replicate {
                PadMode::Replicate
            } else {
                PadMode::Reflect
            };
            Box::new(resnet_gen::ResnetGenerator::new(cfg, n_blocks, 3, pad))
        }
    }
}

pub fn build_discriminator(cfg: &DiscriminatorConfig) -> Box<dyn Network> {
    match cfg.arch {
        DiscriminatorArch::NLayer { n_layers } => {
            Box::new(patchgan::NLayerDiscriminator::new(cfg, n_layers, 2))
        }
        DiscriminatorArch::NLayer3d { n_layers } => {
            Box::new(patchgan::NLayerDiscriminator::new(cfg, n_layers, 3))
        }
        DiscriminatorArch::Pixel => Box::new(pixel_d::PixelDiscriminator::new(cfg)),
    }
}

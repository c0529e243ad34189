//! Benchmarks shared by `benches/` and `mrgan bench`. Results are measured, never assumed:
//! every table row carries its own baseline measured in the same run.

pub mod cpu_conv;
pub mod data_pipeline;
pub mod kernel_table;
#[cfg(feature = "cuda")]
pub mod kernels;
pub mod layers;
pub mod train_step;
pub mod volumetric;

use rand::rngs::Xoshiro256PlusPlus;

use crate::device::Device;
use crate::error::Result;
use crate::models::Trained;
use crate::models::cyclegan::CycleNets;
use crate::models::image_pool::ImagePool;
use crate::nn::init::InitKind;
use crate::nn::nets::{
    DiscriminatorConfig, GeneratorConfig, Network, build_discriminator, build_generator,
};
use crate::optim::adam::AdamConfig;

/// A network as the benchmarks train it, on `device`: the reference's initialisation
/// (normal, gain 0.02) and Adam's GAN settings.
fn trained_on(
    name: &'static str,
    net: Box<dyn Network>,
    rng: &mut Xoshiro256PlusPlus,
    device: &Device,
) -> Result<Trained> {
    let mut t = Trained::new(name, net, (InitKind::Normal, 0.02), AdamConfig::gan(), rng);
    t.to_device(device)?;
    Ok(t)
}

/// CycleGAN's four networks on `device`: two generators `g`, two discriminators `d`, and
/// image pools of `pool_size`.
fn cycle_nets_on(
    g: &GeneratorConfig,
    d: &DiscriminatorConfig,
    pool_size: usize,
    rng: &mut Xoshiro256PlusPlus,
    device: &Device,
) -> Result<CycleNets> {
    Ok(CycleNets {
        g_a: trained_on("G_A", build_generator(g), rng, device)?,
        g_b: trained_on("G_B", build_generator(g), rng, device)?,
        d_a: trained_on("D_A", build_discriminator(d), rng, device)?,
        d_b: trained_on("D_B", build_discriminator(d), rng, device)?,
        pool_a: ImagePool::new(pool_size),
        pool_b: ImagePool::new(pool_size),
    })
}

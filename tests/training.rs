//! Training steps: overfitting one slice pair drives pix2pix's L1 down 10x; CycleGAN's step
//! runs, updates all four networks and fills its pools.

use mrgan::Tensor;
use mrgan::data::normalize::{NormMethod, Normalizer};
use mrgan::data::phantom::{Contrast, PhantomSpec, generate};
use mrgan::data::slices;
use mrgan::models::cyclegan::{CycleLoss, CycleNets};
use mrgan::models::image_pool::ImagePool;
use mrgan::models::pix2pix::Pix2PixLoss;
use mrgan::models::{Trained, cyclegan, pix2pix};
use mrgan::nn::init::InitKind;
use mrgan::nn::layers::NormKind;
use mrgan::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, build_discriminator,
    build_generator,
};
use mrgan::optim::adam::AdamConfig;
use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

/// (Dropout off and lr 5e-3 in the overfitting test: fresh masks every step keep L1 from
/// collapsing, and at 2e-4 a 32 x 32 U-Net needs thousands of steps.)
/// A 32 x 32 T1 / T2 slice pair of the phantom, normalised to [-1, 1].
fn slice_pair() -> (Tensor, Tensor) {
    let ph = generate(&PhantomSpec {
        dims: [32, 32, 16],
        ..PhantomSpec::default()
    });
    let one = |c: Contrast| {
        let v = ph.volume(c);
        let n = Normalizer::fit(v, NormMethod::default()).unwrap();
        let img = slices::slice(&n.apply(&v.data), v.dims, 2, 8);
        Tensor::from_vec([1, 1, 32, 32], img.data).unwrap()
    };
    (one(Contrast::T1), one(Contrast::T2))
}

fn gen_cfg(arch: &str, norm: NormKind, dropout: bool) -> GeneratorConfig {
    GeneratorConfig {
        arch: GeneratorArch::parse(arch).unwrap(),
        input_nc: 1,
        output_nc: 1,
        ngf: 8,
        norm,
        dropout,
    }
}

#[test]
fn pix2pix_overfits_one_pair() {
    let (a, b) = slice_pair();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let adam = AdamConfig::gan();
    let mut g = Trained::new(
        "G",
        build_generator(&gen_cfg("unet_32", NormKind::Batch, false)),
        (InitKind::Normal, 0.02),
        adam,
        &mut rng,
    );
    let d_cfg = DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer { n_layers: 2 },
        input_nc: 2,
        ndf: 8,
        norm: NormKind::Batch,
    };
    let mut d = Trained::new(
        "D",
        build_discriminator(&d_cfg),
        (InitKind::Normal, 0.02),
        adam,
        &mut rng,
    );
    let loss = Pix2PixLoss::default();
    let mut l1 = Vec::new();
    for step in 0..300 {
        let losses = pix2pix::train_step(&mut g, &mut d, &loss, &a, &b, 5e-3, step).unwrap();
        assert!(
            losses.iter().all(|(_, v)| v.is_finite()),
            "step {step}: {losses:?}"
        );
        l1.push(losses[1].1 / loss.lambda_l1);
    }
    let (first, last) = (l1[0], l1[l1.len() - 5..].iter().sum::<f32>() / 5.0);
    println!("L1 {first:.4} -> {last:.4}");
    assert!(last * 10.0 < first, "L1 fell only from {first} to {last}");
}

#[test]
fn cyclegan_step_updates_everything() {
    let (a, b) = slice_pair();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let adam = AdamConfig::gan();
    let init = (InitKind::Normal, 0.02);
    let g = gen_cfg("resnet_6blocks", NormKind::Instance, false);
    let d = DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer { n_layers: 3 },
        input_nc: 1,
        ndf: 8,
        norm: NormKind::Instance,
    };
    let mut nets = CycleNets {
        g_a: Trained::new("G_A", build_generator(&g), init, adam, &mut rng),
        g_b: Trained::new("G_B", build_generator(&g), init, adam, &mut rng),
        d_a: Trained::new("D_A", build_discriminator(&d), init, adam, &mut rng),
        d_b: Trained::new("D_B", build_discriminator(&d), init, adam, &mut rng),
        pool_a: ImagePool::new(50),
        pool_b: ImagePool::new(50),
    };
    let before: Vec<Vec<f32>> = [&nets.g_a, &nets.g_b, &nets.d_a, &nets.d_b]
        .iter()
        .map(|t| t.net.arena().values().to_vec())
        .collect();
    let losses =
        cyclegan::train_step(&mut nets, &CycleLoss::default(), &a, &b, 2e-4, 0, &mut rng).unwrap();
    assert_eq!(losses.len(), 8);
    assert!(
        losses.iter().all(|(_, v)| v.is_finite() && *v > 0.0),
        "{losses:?}"
    );
    let after = [&nets.g_a, &nets.g_b, &nets.d_a, &nets.d_b];
    for (t, old) in after.iter().zip(&before) {
        assert_ne!(
            t.net.arena().values(),
            &old[..],
            "{} was not updated",
            t.name
        );
        assert_eq!(t.adam.steps(), 1);
    }
    assert_eq!((nets.pool_a.images.len(), nets.pool_b.images.len()), (1, 1));
}

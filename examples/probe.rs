//! Development aid: fit a generator to one slice pair with L1 alone.
use mrgan::Tensor;
use mrgan::autograd::Tape;
use mrgan::data::normalize::{NormMethod, Normalizer};
use mrgan::data::phantom::{Contrast, PhantomSpec, generate};
use mrgan::data::slices;
use mrgan::models::Trained;
use mrgan::nn::init::InitKind;
use mrgan::nn::layers::{Mode, NormKind};
use mrgan::nn::nets::{GeneratorArch, GeneratorConfig, build_generator};
use mrgan::ops::loss::{LossKind, LossTarget};
use mrgan::optim::adam::AdamConfig;
use rand::SeedableRng;
fn main() {
    let ph = generate(&PhantomSpec {
        dims: [32, 32, 16],
        ..PhantomSpec::default()
    });
    let one = |c: Contrast| {
        let v = ph.volume(c);
        let n = Normalizer::fit(v, NormMethod::default()).unwrap();
        Tensor::from_vec(
            [1, 1, 32, 32],
            slices::slice(&n.apply(&v.data), v.dims, 2, 8).data,
        )
        .unwrap()
    };
    let (a, b) = (one(Contrast::T1), one(Contrast::T2));
    let norm = match std::env::args().nth(1).as_deref() {
        Some("instance") => NormKind::Instance,
        Some("none") => NormKind::None,
        _ => NormKind::Batch,
    };
    let lr: f64 = std::env::args().nth(2).map_or(1e-3, |s| s.parse().unwrap());
    let cfg = GeneratorConfig {
        arch: GeneratorArch::parse("unet_32").unwrap(),
        input_nc: 1,
        output_nc: 1,
        ngf: 8,
        norm,
        dropout: false,
    };
    let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(0);
    let mut g = Trained::new(
        "G",
        build_generator(&cfg),
        (InitKind::Normal, 0.02),
        AdamConfig::gan(),
        &mut rng,
    );
    for step in 0..300 {
        let mut tape = Tape::new();
        let x = tape.constant(a.clone());
        let t = tape.constant(b.clone());
        let y = g.net.forward(&mut tape, x, &Mode::train(0)).unwrap();
        let l = tape.loss(LossKind::L1, y, LossTarget::Var(t)).unwrap();
        let grads = tape.backward(l).unwrap();
        g.step(&grads, lr).unwrap();
        if step % 50 == 0 || step == 299 {
            println!("{step} {}", tape.value(l).item().unwrap());
        }
    }
}

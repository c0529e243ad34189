//! The reference networks: parameter counts and names from the spec's tables, output
//! shapes, and every parameter receiving a gradient.

use mrgan::Tensor;
use mrgan::autograd::Tape;
use mrgan::nn::layers::{Mode, NormKind};
use mrgan::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, Network,
    build_discriminator, build_generator,
};
use mrgan::ops::loss::{LossKind, LossTarget};

fn generator(arch: &str, nc: usize, norm: NormKind, dropout: bool, ngf: usize) -> Box<dyn Network> {
    build_generator(&GeneratorConfig {
        arch: GeneratorArch::parse(arch).unwrap(),
        input_nc: nc,
        output_nc: nc,
        ngf,
        norm,
        dropout,
    })
}

fn discriminator(
    arch: DiscriminatorArch,
    input_nc: usize,
    norm: NormKind,
    ndf: usize,
) -> Box<dyn Network> {
    build_discriminator(&DiscriminatorConfig {
        arch,
        input_nc,
        ndf,
        norm,
    })
}

fn count(net: &dyn Network) -> usize {
    net.arena().len()
}

#[test]
fn parameter_counts_match_the_reference() {
    use NormKind::*;
    assert_eq!(
        count(&*generator("unet_256", 1, Batch, true, 64)),
        54_407_809
    );
    assert_eq!(
        count(&*generator("unet_256", 3, Batch, false, 64)),
        54_413_955
    );
    assert_eq!(
        count(&*generator("unet_128", 3, Batch, true, 64)),
        41_828_995
    );
    assert_eq!(
        count(&*generator("resnet_9blocks", 3, Instance, false, 64)),
        11_378_179
    );
    assert_eq!(
        count(&*generator("resnet_9blocks", 1, Instance, false, 64)),
        11_365_633
    );
    assert_eq!(
        count(&*generator("resnet_6blocks", 3, Instance, false, 64)),
        7_837_699
    );
    let basic = DiscriminatorArch::NLayer { n_layers: 3 };
    assert_eq!(count(&*discriminator(basic, 6, Batch, 64)), 2_768_705);
    assert_eq!(count(&*discriminator(basic, 3, Instance, 64)), 2_764_737);
    assert_eq!(count(&*discriminator(basic, 2, Batch, 64)), 2_764_609);
    assert_eq!(count(&*discriminator(basic, 1, Instance, 64)), 2_762_689);
}

#[test]
fn parameter_names_follow_the_state_dict() {
    let unet = generator("unet_256", 1, NormKind::Batch, true, 64);
    let names: Vec<(&str, &[usize])> = unet
        .arena()
        .entries()
        .iter()
        .map(|e| (e.name.as_str(), e.shape.dims()))
        .collect();
    let has = |name: &str, shape: &[usize]| {
        assert!(names.contains(&(name, shape)), "missing {name} {shape:?}")
    };
    has("model.model.0.weight", &[64, 1, 4, 4]);
    has("model.model.1.model.2.weight", &[128]);
    has(
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.3.weight",
        &[512, 512, 4, 4],
    );
    has(
        "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.4.bias",
        &[512],
    );
    has("model.model.1.model.3.model.5.weight", &[512, 128, 4, 4]);
    has("model.model.3.weight", &[128, 1, 4, 4]);
    has("model.model.3.bias", &[1]);
    // Weights and BN affine parameters only: 82 state_dict entries minus 13 BNs x 3 buffers
    // (running_mean, running_var, num_batches_tracked).
    assert_eq!(names.len(), 82 - 13 * 3);

    let resnet = generator("resnet_9blocks", 1, NormKind::Instance, false, 64);
    let rn: Vec<&str> = resnet
        .arena()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for key in [
        "model.1.weight",
        "model.1.bias",
        "model.10.conv_block.5.weight",
        "model.19.weight",
        "model.26.bias",
    ] {
        assert!(rn.contains(&key), "missing {key}");
    }
    let with_dropout = generator("resnet_6blocks", 1, NormKind::Instance, true, 8);
    let rd: Vec<&str> = with_dropout
        .arena()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert!(rd.contains(&"model.10.conv_block.6.weight") && rd.contains(&"model.23.weight"));

    let d = discriminator(
        DiscriminatorArch::NLayer { n_layers: 3 },
        2,
        NormKind::Batch,
        64,
    );
    let dn: Vec<&str> = d
        .arena()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        dn,
        [
            "model.0.weight",
            "model.0.bias",
            "model.2.weight",
            "model.3.weight",
            "model.3.bias",
            "model.5.weight",
            "model.6.weight",
            "model.6.bias",
            "model.8.weight",
            "model.9.weight",
            "model.9.bias",
            "model.11.weight",
            "model.11.bias"
        ]
    );
    let p = discriminator(DiscriminatorArch::Pixel, 2, NormKind::Batch, 64);
    let pn: Vec<&str> = p
        .arena()
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        pn,
        [
            "net.0.weight",
            "net.0.bias",
            "net.2.weight",
            "net.5.weight",
            "net.3.weight",
            "net.3.bias"
        ]
    );
}

fn forward_shape(net: &mut dyn Network, input: &[usize]) -> Vec<usize> {
    let mut tape = Tape::no_grad();
    let x = tape.constant(Tensor::full(input, 0.1));
    let y = net.forward(&mut tape, x, &Mode::inference(true)).unwrap();
    tape.value(y).dims().to_vec()
}

#[test]
fn output_shapes() {
    assert_eq!(
        forward_shape(
            &mut *generator("unet_128", 1, NormKind::Batch, true, 4),
            &[2, 1, 128, 128]
        ),
        [2, 1, 128, 128]
    );
    assert_eq!(
        forward_shape(
            &mut *generator("resnet_6blocks", 1, NormKind::Instance, false, 4),
            &[1, 1, 36, 44]
        ),
        [1, 1, 36, 44]
    );
    let basic = DiscriminatorArch::NLayer { n_layers: 3 };
    assert_eq!(
        forward_shape(
            &mut *discriminator(basic, 2, NormKind::Batch, 4),
            &[1, 2, 256, 256]
        ),
        [1, 1, 30, 30]
    );
    assert_eq!(
        forward_shape(
            &mut *discriminator(DiscriminatorArch::Pixel, 2, NormKind::Batch, 4),
            &[1, 2, 9, 7]
        ),
        [1, 1, 9, 7]
    );
}

#[test]
fn every_parameter_gets_a_gradient() {
    let nets: Vec<(Box<dyn Network>, Vec<usize>)> = vec![
        (
            generator("unet_32", 1, NormKind::Batch, true, 4),
            vec![2, 1, 32, 32],
        ),
        (
            generator("resnet_6blocks", 2, NormKind::Instance, true, 4),
            vec![1, 2, 16, 12],
        ),
        (
            discriminator(
                DiscriminatorArch::NLayer { n_layers: 3 },
                2,
                NormKind::Batch,
                4,
            ),
            vec![2, 2, 32, 32],
        ),
        (
            discriminator(DiscriminatorArch::Pixel, 1, NormKind::Instance, 4),
            vec![1, 1, 8, 8],
        ),
    ];
    for (mut net, shape) in nets {
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(1);
        mrgan::nn::init::init_arena(
            net.arena_mut(),
            mrgan::nn::init::InitKind::Normal,
            0.5,
            &mut rng,
        );
        let n: usize = shape.iter().product();
        let mut tape = Tape::new();
        let x = tape.constant(
            Tensor::from_vec(
                shape.clone(),
                (0..n).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect(),
            )
            .unwrap(),
        );
        let y = net.forward(&mut tape, x, &Mode::train(3)).unwrap();
        let l = tape.loss(LossKind::Mse, y, LossTarget::Const(0.3)).unwrap();
        let grads = tape.backward(l).unwrap();
        net.arena_mut().accumulate_grads(&grads).unwrap();
        for e in net.arena().entries() {
            let g = &net.arena().grads()[e.range()];
            assert!(
                g.iter().any(|&v| v != 0.0),
                "{shape:?}: {} has no gradient",
                e.name
            );
        }
    }
}

use rand::SeedableRng;

/// Inference releases activations as the ResNet generators go (`Tape::release_since`): at
/// the end the tape holds the parameters, the input and the last two values (the head's
/// output and its tanh), where a recording tape holds every activation for backward. The
/// outputs are the same either way.
#[test]
fn inference_keeps_only_live_activations() {
    for (arch, shape) in [
        ("resnet_6blocks", vec![1, 1, 24, 20]),
        ("resnet3d_6blocks", vec![1, 1, 12, 16, 8]),
    ] {
        let mut net = generator(arch, 1, NormKind::Instance, false, 4);
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec(
            shape.clone(),
            (0..n).map(|i| ((i * 37) % 11) as f32 / 5.0 - 1.0).collect(),
        )
        .unwrap();
        let run = |net: &mut dyn Network, mut tape: Tape| {
            let xv = tape.constant(x.clone());
            let y = net.forward(&mut tape, xv, &Mode::inference(true)).unwrap();
            (tape.value(y).to_vec().unwrap(), tape.held_bytes())
        };
        let (released, held) = run(&mut *net, Tape::no_grad());
        let (recorded, held_recording) = run(&mut *net, Tape::new());
        assert_eq!(released, recorded, "{arch}: outputs");
        let params = net.arena().len() * 4;
        let image = n * 4;
        assert_eq!(held, params + 3 * image, "{arch}: held by the no-grad tape");
        assert!(
            held_recording > params + 20 * image,
            "{arch}: a recording tape holds every activation ({held_recording} bytes)"
        );
    }
}

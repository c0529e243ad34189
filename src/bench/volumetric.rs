//! Volumetric CycleGAN prediction cost: one sliding window of the default 3D generator
//! (resnet3d_9blocks, ngf 64, patch 128 x 128 x 64) timed, times the number of windows a
//! 240 x 240 x 155 volume needs at strides 32 / 32.

use std::time::Instant;

use crate::autograd::Tape;
use crate::error::Result;
use crate::infer::sliding::starts;
use crate::nn::layers::{Mode, NormKind};
use crate::nn::nets::{GeneratorArch, GeneratorConfig, build_generator};
use crate::tensor::Tensor;

/// (seconds per window, windows per volume).
pub fn window_cost(
    ngf: usize,
    patch: [usize; 3],
    volume: [usize; 3],
    stride: [usize; 3],
) -> Result<(f64, usize)> {
    let cfg = GeneratorConfig {
        arch: GeneratorArch::Resnet3d {
            n_blocks: 9,
            replicate: true,
        },
        input_nc: 1,
        output_nc: 1,
        ngf,
        norm: NormKind::Instance,
        dropout: false,
    };
    let mut g = build_generator(&cfg);
    let n: usize = patch.iter().product();
    let x = Tensor::from_vec(
        [1, 1, patch[2], patch[1], patch[0]],
        (0..n).map(|i| ((i % 97) as f32) / 50.0 - 1.0).collect(),
    )?;
    let t = Instant::now();
    let mut tape = Tape::no_grad();
    let xv = tape.constant(x);
    g.forward(&mut tape, xv, &Mode::inference(true))?;
    let seconds = t.elapsed().as_secs_f64();
    let windows = (0..3)
        .map(|a| starts(volume[a].max(patch[a]), patch[a], stride[a]).len())
        .product();
    Ok((seconds, windows))
}

//! Volumetric CycleGAN costs on a device: prediction (one sliding window of the default 3D
//! generator, resnet3d_9blocks with ngf 64 on a 128 x 128 x 64 patch, timed after a warm-up
//! and multiplied by the windows a 240 x 240 x 155 volume needs at strides 32 / 32, or a
//! whole such volume timed end to end), and optionally one whole CycleGAN training step (both
//! generators, both 3D PatchGANs) with the device memory the step's buffers peak at.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::cycle_nets_on;
use super::train_step::{run_torch_reference, torch_reference_script};
use crate::device::Device;
use crate::error::Result;
use crate::infer::forward_no_grad;
use crate::infer::sliding::{self, SlidingWindow, window_count};
use crate::models::cyclegan::{CycleLoss, train_step};
use crate::nn::layers::{Mode, NormKind};
use crate::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, Network,
    build_generator,
};
use crate::tensor::Tensor;

fn generator_config(ngf: usize) -> GeneratorConfig {
    GeneratorConfig {
        arch: GeneratorArch::Resnet3d {
            n_blocks: 9,
            replicate: true,
        },
        input_nc: 1,
        output_nc: 1,
        ngf,
        norm: NormKind::Instance,
        dropout: false,
    }
}

/// `n` values of a smooth ramp in [-1, 1).
fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| ((i % 97) as f32) / 50.0 - 1.0).collect()
}

/// A batch of `batch` patches filled with a ramp, on `device`.
fn patches(batch: usize, patch: [usize; 3], device: &Device) -> Result<Tensor> {
    let n: usize = batch * patch.iter().product::<usize>();
    Tensor::from_vec([batch, 1, patch[2], patch[1], patch[0]], ramp(n))?.to_device(device)
}

/// The default 3D generator with `ngf` filters on `device`.
fn generator_on(ngf: usize, device: &Device) -> Result<Box<dyn Network>> {
    let mut g = build_generator(&generator_config(ngf));
    g.to_device(device)?;
    Ok(g)
}

/// Seconds of one window of `patch` through `g` on `device`, ending with the output on the
/// host (the first call also fills the device's buffer cache).
fn time_window(g: &mut dyn Network, patch: [usize; 3], device: &Device) -> Result<f64> {
    let x = patches(1, patch, device)?;
    let t = Instant::now();
    forward_no_grad(g, x, &Mode::inference(true))?.to_host()?;
    Ok(t.elapsed().as_secs_f64())
}

/// (seconds per window, windows per volume of `volume` voxels) on `device`: the second of two
/// runs (the first fills the device's buffer cache).
pub fn window_cost(
    ngf: usize,
    opts: &SlidingWindow,
    volume: [usize; 3],
    device: &Device,
) -> Result<(f64, usize)> {
    let mut g = generator_on(ngf, device)?;
    time_window(g.as_mut(), opts.patch, device)?;
    let seconds = time_window(g.as_mut(), opts.patch, device)?;
    Ok((seconds, window_count(volume, opts)))
}

/// Seconds to predict a whole volume of `volume` voxels (a ramp) through the sliding windows
/// of `opts` on `device`, as `mrgan predict` does, after one window as a warm-up; `progress`
/// hears (windows done, in all).
pub fn volume_cost(
    ngf: usize,
    opts: &SlidingWindow,
    volume: [usize; 3],
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<f64> {
    let mut g = generator_on(ngf, device)?;
    time_window(g.as_mut(), opts.patch, device)?;
    let data = ramp(volume.iter().product());
    let mode = Mode::inference(true);
    let t = Instant::now();
    sliding::run(
        &data,
        volume,
        -1.0,
        opts,
        device,
        |x| forward_no_grad(g.as_mut(), x, &mode),
        progress,
    )?;
    Ok(t.elapsed().as_secs_f64())
}

/// Seconds of one CycleGAN training step (the second of two) at `batch` patches per domain,
/// generators of `ngf` and 3D PatchGANs (n_layers 3) of `ngf` filters, on `device`.
pub fn train_step_cost(
    ngf: usize,
    patch: [usize; 3],
    batch: usize,
    device: &Device,
) -> Result<f64> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let d_cfg = DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer3d { n_layers: 3 },
        input_nc: 1,
        ndf: ngf,
        norm: NormKind::Instance,
    };
    let mut nets = cycle_nets_on(&generator_config(ngf), &d_cfg, 50, &mut rng, device)?;
    let (a, b) = (
        patches(batch, patch, device)?,
        patches(batch, patch, device)?,
    );
    let mut seconds = 0.0;
    for step in 0..2 {
        let t = Instant::now();
        // The step reads its losses on the host, so the device work is done when it returns.
        train_step(
            &mut nets,
            &CycleLoss::default(),
            &a,
            &b,
            2e-4,
            step,
            &mut rng,
        )?;
        seconds = t.elapsed().as_secs_f64();
    }
    Ok(seconds)
}

/// PyTorch's seconds for the same step (`benches/torch_reference.py --model cyclegan3d`, pools
/// off) on the same kind of device, after a warm-up step as mrgan's (`--iters 2`: the slower
/// of two timed steps), with its whole output line; or why it could not run. Call it after
/// `Device::release_cached_memory`, so that PyTorch has the device's memory.
pub fn torch_train_step(
    python: &str,
    ngf: usize,
    patch: [usize; 3],
    batch: usize,
    device: &Device,
) -> std::result::Result<(f64, String), String> {
    let [x, y, z] = patch;
    let args = [
        "--patch".to_string(),
        format!("{x},{y},{z}"),
        "--ngf".into(),
        ngf.to_string(),
        "--batch".into(),
        batch.to_string(),
        "--iters".into(),
        "2".into(),
        "--threads".into(),
        rayon::current_num_threads().to_string(),
        "--device".into(),
        if device.is_cpu() { "cpu" } else { "cuda" }.into(),
    ];
    run_torch_reference(python, &torch_reference_script(), "cyclegan3d", &args)
        .map(|(times, line)| (times.iteration, line))
}

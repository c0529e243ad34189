//! One pix2pix training iteration (unet_256 + basic PatchGAN, ngf = ndf = 64, 256 x 256,
//! one channel) and one generator inference, on the CPU or a GPU; with the PyTorch
//! reference (`benches/torch_reference.py`) timed in the same run on the same device when a
//! Python with torch is found. Every timed iteration ends with its losses read on the host
//! and every inference with its output there, so GPU work is finished inside the timing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::autograd::Tape;
use crate::device::Device;
use crate::error::Result;
use crate::models::Trained;
use crate::models::pix2pix::{Pix2PixLoss, train_step};
use crate::nn::init::InitKind;
use crate::nn::layers::{Mode, NormKind};
use crate::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, build_discriminator,
    build_generator,
};
use crate::optim::adam::AdamConfig;
use crate::tensor::Tensor;

/// Median seconds of one training iteration and one inference.
#[derive(Clone, Copy, Debug)]
pub struct StepTimes {
    pub iteration: f64,
    pub inference: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What a side-by-side run measures.
#[derive(Clone, Debug)]
pub struct TrainBench {
    pub size: usize,
    pub batch: usize,
    pub iters: usize,
    pub device: Device,
}

/// Times mrgan's pix2pix (median of `iters`, after one warm-up).
pub fn mrgan_pix2pix(b: &TrainBench) -> Result<StepTimes> {
    let TrainBench {
        size,
        batch,
        iters,
        ref device,
    } = *b;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
    let g_cfg = GeneratorConfig {
        arch: GeneratorArch::Unet { num_downs: 8 },
        input_nc: 1,
        output_nc: 1,
        ngf: 64,
        norm: NormKind::Batch,
        dropout: true,
    };
    let d_cfg = DiscriminatorConfig {
        arch: DiscriminatorArch::NLayer { n_layers: 3 },
        input_nc: 2,
        ndf: 64,
        norm: NormKind::Batch,
    };
    let init = (InitKind::Normal, 0.02);
    let mut g = Trained::new(
        "G",
        build_generator(&g_cfg),
        init,
        AdamConfig::gan(),
        &mut rng,
    );
    let mut d = Trained::new(
        "D",
        build_discriminator(&d_cfg),
        init,
        AdamConfig::gan(),
        &mut rng,
    );
    g.to_device(device)?;
    d.to_device(device)?;
    let n = batch * size * size;
    let image = |seed: usize| {
        Tensor::from_vec(
            [batch, 1, size, size],
            (0..n)
                .map(|i| (((i * 7919 + seed) % 2000) as f32 / 1000.0) - 1.0)
                .collect(),
        )?
        .to_device(device)
    };
    let (a, b) = (image(1)?, image(2)?);
    let loss = Pix2PixLoss::default();
    let mut times = Vec::new();
    for i in 0..=iters.max(1) {
        let t = Instant::now();
        train_step(&mut g, &mut d, &loss, &a, &b, 2e-4, i as u64)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let mut infer = Vec::new();
    for i in 0..=iters.max(1) {
        let t = Instant::now();
        let mut tape = Tape::no_grad();
        let x = tape.constant(a.clone());
        let y = g.net.forward(&mut tape, x, &Mode::inference(true))?;
        tape.value(y).to_host()?;
        if i > 0 {
            infer.push(t.elapsed().as_secs_f64());
        }
    }
    Ok(StepTimes {
        iteration: median(times),
        inference: median(infer),
    })
}

/// Runs the PyTorch reference with `python`; None (with the reason) when it cannot run.
pub fn torch_pix2pix(
    python: &str,
    script: &Path,
    b: &TrainBench,
    threads: usize,
) -> std::result::Result<(StepTimes, String), String> {
    let device = if b.device.is_cpu() { "cpu" } else { "cuda" };
    let out = Command::new(python)
        .arg(script)
        .args([
            "--size",
            &b.size.to_string(),
            "--batch",
            &b.batch.to_string(),
            "--iters",
            &b.iters.to_string(),
            "--threads",
            &threads.to_string(),
            "--device",
            device,
        ])
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{python} {} failed: {}",
            script.display(),
            err.lines().last().unwrap_or("")
        ));
    }
    // "... pix2pix iteration 0.934 s, generator inference 0.108 s ..."
    let number_after = |key: &str| -> Option<f64> {
        text.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    match (
        number_after("pix2pix iteration"),
        number_after("generator inference"),
    ) {
        (Some(iteration), Some(inference)) => Ok((
            StepTimes {
                iteration,
                inference,
            },
            text.trim().to_string(),
        )),
        _ => Err(format!(
            "unexpected output from the PyTorch reference: {text}"
        )),
    }
}

/// The side-by-side table: mrgan, PyTorch (when `python` has torch) and their ratio.
pub fn report(b: &TrainBench, python: &str) -> Result<String> {
    use std::fmt::Write as _;
    let threads = rayon::current_num_threads();
    let where_ = match &b.device {
        Device::Cpu => format!("CPU, {threads} threads"),
        #[allow(unreachable_patterns)] // only the CPU without the cuda feature
        other => other.describe(),
    };
    let mut out = format!(
        "pix2pix unet_256 + basic D, ngf/ndf 64, {0}x{0}, batch {1}, {where_}, median of {2}\n",
        b.size, b.batch, b.iters
    );
    let ours = mrgan_pix2pix(b)?;
    // $MRGAN_TORCH_REFERENCE: where a copied binary finds the script (the GPU bundle).
    let script = std::env::var_os("MRGAN_TORCH_REFERENCE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py"),
        std::path::PathBuf::from,
    );
    let _ = writeln!(
        out,
        "{:<22} {:>14} {:>16}",
        "", "iteration s", "inference s"
    );
    let _ = writeln!(
        out,
        "{:<22} {:>14.3} {:>16.3}",
        "mrgan", ours.iteration, ours.inference
    );
    match torch_pix2pix(python, &script, b, threads) {
        Ok((t, line)) => {
            let _ = writeln!(
                out,
                "{:<22} {:>14.3} {:>16.3}",
                "PyTorch", t.iteration, t.inference
            );
            let _ = writeln!(
                out,
                "{:<22} {:>14.2} {:>16.2}",
                "mrgan / PyTorch",
                ours.iteration / t.iteration,
                ours.inference / t.inference
            );
            let _ = writeln!(out, "({line})");
        }
        Err(why) => {
            let _ = writeln!(out, "PyTorch side skipped: {why}");
        }
    }
    Ok(out)
}

//! One pix2pix training iteration (unet_256 + basic PatchGAN, ngf = ndf = 64, 256 x 256,
//! batch 1, one channel) and one generator inference, on the CPU; with the PyTorch reference
//! (`benches/torch_reference.py`) timed in the same run when a Python with torch is found.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use crate::autograd::Tape;
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

/// Times mrgan's pix2pix at `size` x `size` (median of `iters`, after one warm-up).
pub fn mrgan_pix2pix(size: usize, iters: usize) -> Result<StepTimes> {
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
    let n = size * size;
    let image = |seed: usize| {
        Tensor::from_vec(
            [1, 1, size, size],
            (0..n)
                .map(|i| (((i * 7919 + seed) % 2000) as f32 / 1000.0) - 1.0)
                .collect(),
        )
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
        g.net.forward(&mut tape, x, &Mode::inference(true))?;
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
    size: usize,
    iters: usize,
    threads: usize,
) -> std::result::Result<(StepTimes, String), String> {
    let out = Command::new(python)
        .arg(script)
        .args([
            "--size",
            &size.to_string(),
            "--iters",
            &iters.to_string(),
            "--threads",
            &threads.to_string(),
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
pub fn report(size: usize, iters: usize, python: &str) -> Result<String> {
    use std::fmt::Write as _;
    let threads = rayon::current_num_threads();
    let mut out = format!(
        "pix2pix unet_256 + basic D, ngf/ndf 64, {size}x{size}, batch 1, CPU, {threads} threads, median of {iters}\n"
    );
    let ours = mrgan_pix2pix(size, iters)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py");
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
    match torch_pix2pix(python, &script, size, iters, threads) {
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

//! One training iteration and one generator inference, on the CPU or a GPU: pix2pix
//! (unet_256 + basic PatchGAN) or CycleGAN (two resnet_9blocks generators and two basic
//! PatchGANs), ngf = ndf = 64, one channel; with the PyTorch reference
//! (`benches/torch_reference.py`) timed in the same run on the same device when a Python
//! with torch is found. Every timed iteration ends with its losses read on the host and
//! every inference with its output there, so GPU work is finished inside the timing.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;

use super::{cycle_nets_on, trained_on};
use crate::autograd::Tape;
use crate::device::Device;
use crate::error::Result;
use crate::models::Trained;
use crate::models::cyclegan::{self, CycleLoss, CycleNets};
use crate::models::pix2pix::{self, Pix2PixLoss};
use crate::nn::layers::{Mode, NormKind};
use crate::nn::nets::{
    DiscriminatorArch, DiscriminatorConfig, GeneratorArch, GeneratorConfig, build_discriminator,
    build_generator,
};
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

/// The model a bench trains, as the reference configures it: pix2pix with batch norm,
/// dropout and the vanilla GAN loss; CycleGAN with instance norm, LSGAN and the identity
/// loss, its image pools off (as the PyTorch side runs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchModel {
    Pix2pix,
    Cyclegan,
}

impl BenchModel {
    /// The name `torch_reference.py --model` takes and prints.
    pub fn name(self) -> &'static str {
        match self {
            BenchModel::Pix2pix => "pix2pix",
            BenchModel::Cyclegan => "cyclegan",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            BenchModel::Pix2pix => "pix2pix unet_256 + basic D",
            BenchModel::Cyclegan => "CycleGAN 2 x resnet_9blocks + 2 x basic D",
        }
    }
}

/// What a side-by-side run measures.
#[derive(Clone, Debug)]
pub struct TrainBench {
    pub model: BenchModel,
    pub size: usize,
    pub batch: usize,
    pub iters: usize,
    pub device: Device,
}

/// The networks of one bench, trained on the device (one per bench, so the variants' size
/// difference does not matter).
#[allow(clippy::large_enum_variant)]
enum Models {
    Pix2pix { g: Trained, d: Trained },
    Cyclegan(Box<CycleNets>),
}

impl Models {
    fn build(model: BenchModel, device: &Device) -> Result<Models> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0);
        let generator = |arch, norm, dropout| GeneratorConfig {
            arch,
            input_nc: 1,
            output_nc: 1,
            ngf: 64,
            norm,
            dropout,
        };
        let discriminator = |input_nc, norm| DiscriminatorConfig {
            arch: DiscriminatorArch::NLayer { n_layers: 3 },
            input_nc,
            ndf: 64,
            norm,
        };
        Ok(match model {
            BenchModel::Pix2pix => {
                let unet = GeneratorArch::Unet { num_downs: 8 };
                let g = build_generator(&generator(unet, NormKind::Batch, true));
                let d = build_discriminator(&discriminator(2, NormKind::Batch));
                Models::Pix2pix {
                    g: trained_on("G", g, &mut rng, device)?,
                    d: trained_on("D", d, &mut rng, device)?,
                }
            }
            BenchModel::Cyclegan => {
                let g = generator(
                    GeneratorArch::Resnet { n_blocks: 9 },
                    NormKind::Instance,
                    false,
                );
                let d = discriminator(1, NormKind::Instance);
                Models::Cyclegan(Box::new(cycle_nets_on(&g, &d, 0, &mut rng, device)?))
            }
        })
    }

    /// One training iteration on the pair (a, b), step `i`.
    fn train(
        &mut self,
        a: &Tensor,
        b: &Tensor,
        i: u64,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<()> {
        match self {
            Models::Pix2pix { g, d } => {
                pix2pix::train_step(g, d, &Pix2PixLoss::default(), a, b, 2e-4, i)?;
            }
            Models::Cyclegan(n) => {
                cyclegan::train_step(n, &CycleLoss::default(), a, b, 2e-4, i, rng)?;
            }
        }
        Ok(())
    }

    /// The generator from A to B.
    fn generator(&mut self) -> &mut Trained {
        match self {
            Models::Pix2pix { g, .. } => g,
            Models::Cyclegan(n) => &mut n.g_a,
        }
    }
}

/// Times mrgan's iteration of `b.model` (median of `iters`, after one warm-up).
pub fn mrgan_iteration(b: &TrainBench) -> Result<StepTimes> {
    let TrainBench {
        model,
        size,
        batch,
        iters,
        ref device,
    } = *b;
    let mut models = Models::build(model, device)?;
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
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let mut times = Vec::new();
    for i in 0..=iters.max(1) {
        let t = Instant::now();
        models.train(&a, &b, i as u64, &mut rng)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64());
        }
    }
    let g = models.generator();
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
pub fn torch_iteration(
    python: &str,
    script: &Path,
    b: &TrainBench,
    threads: usize,
) -> std::result::Result<(StepTimes, String), String> {
    let device = if b.device.is_cpu() { "cpu" } else { "cuda" };
    let args = [
        "--size".to_string(),
        b.size.to_string(),
        "--batch".into(),
        b.batch.to_string(),
        "--iters".into(),
        b.iters.to_string(),
        "--threads".into(),
        threads.to_string(),
        "--device".into(),
        device.into(),
    ];
    run_torch_reference(python, script, b.model.name(), &args)
}

/// The script's `model` (`pix2pix`, `cyclegan`, `cyclegan3d`) with `args`: its median
/// iteration and inference times and its whole output line, or why it could not run.
pub(crate) fn run_torch_reference(
    python: &str,
    script: &Path,
    model: &str,
    args: &[String],
) -> std::result::Result<(StepTimes, String), String> {
    let out = Command::new(python)
        .arg(script)
        .args(["--model", model])
        .args(args)
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
        number_after(&format!("{model} iteration")),
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

/// Where the PyTorch reference script is: $MRGAN_TORCH_REFERENCE (a copied binary's, the
/// GPU bundle), else the source tree's.
pub(crate) fn torch_reference_script() -> std::path::PathBuf {
    std::env::var_os("MRGAN_TORCH_REFERENCE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/torch_reference.py"),
        std::path::PathBuf::from,
    )
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
        "{0}, ngf/ndf 64, {1}x{1}, batch {2}, {where_}, median of {3}\n",
        b.model.describe(),
        b.size,
        b.batch,
        b.iters
    );
    let ours = mrgan_iteration(b)?;
    let script = torch_reference_script();
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
    // mrgan's networks are gone: their memory goes back to the driver, for PyTorch's.
    b.device.release_cached_memory();
    match torch_iteration(python, &script, b, threads) {
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
    let tuned = b.device.autotune_summary();
    if !tuned.is_empty() {
        let _ = writeln!(out, "autotuned conv shapes: {}", tuned.join("; "));
    }
    Ok(out)
}

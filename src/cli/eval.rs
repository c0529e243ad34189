//! `mrgan eval`: PSNR / SSIM / MAE / NMSE of predicted volumes against real ones, paired by
//! subject or file name; a table for people, JSON / CSV for machines.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde::Serialize;

use mrgan::data::discover::{Entry, pair, volumes};
use mrgan::data::nifti::stem;
use mrgan::data::nifti::{ReadOptions, read};
use mrgan::data::volume::Volume;
use mrgan::metrics::{EvalOptions, VolumeScores, Window, evaluate};
use mrgan::report::write_atomic;

#[derive(Args)]
pub struct EvalArgs {
    /// Predicted volume, or a folder of them (loose files or one per subject folder).
    #[arg(long)]
    pred: PathBuf,
    /// Real (target) volume, or a folder laid out like --pred.
    #[arg(long)]
    real: PathBuf,
    /// In subject folders of --pred, the modality to take (e.g. t2); needed when a folder
    /// holds several volumes.
    #[arg(long)]
    pred_name: Option<String>,
    /// In subject folders of --real, the modality to take.
    #[arg(long)]
    real_name: Option<String>,
    /// Axis of the slices the 2D SSIM averages over (0, 1, 2; 2 = axial in RAS+).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..3))]
    axis: u8,
    /// Restrict PSNR, MAE and NMSE to the real volume's non-zero voxels.
    #[arg(long, value_enum, default_value_t = Mask::None)]
    mask: Mask,
    /// Data range for PSNR and SSIM (default: max - min of each real volume).
    #[arg(long)]
    data_range: Option<f64>,
    /// Gaussian SSIM window (sigma 1.5) instead of the 7-wide uniform one.
    #[arg(long)]
    gaussian: bool,
    /// Write the scores as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the scores as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Mask {
    None,
    Nonzero,
}

#[derive(Serialize)]
struct SubjectRow {
    subject: String,
    #[serde(flatten)]
    scores: VolumeScores,
}

#[derive(Serialize)]
struct Summary {
    mean: Stats,
    std: Stats,
}

#[derive(Serialize, Default)]
struct Stats {
    psnr: f64,
    ssim: f64,
    ssim3d: Option<f64>,
    mae: f64,
    nmse: f64,
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (
        mean,
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

fn summarize(rows: &[SubjectRow]) -> Summary {
    let column = |f: &dyn Fn(&VolumeScores) -> f64| {
        mean_std(&rows.iter().map(|r| f(&r.scores)).collect::<Vec<_>>())
    };
    let (psnr, ssim, mae, nmse) = (
        column(&|s| s.psnr),
        column(&|s| s.ssim),
        column(&|s| s.mae),
        column(&|s| s.nmse),
    );
    let s3: Option<Vec<f64>> = rows.iter().map(|r| r.scores.ssim3d).collect();
    let ssim3d = s3.map(|v| mean_std(&v));
    Summary {
        mean: Stats {
            psnr: psnr.0,
            ssim: ssim.0,
            ssim3d: ssim3d.map(|s| s.0),
            mae: mae.0,
            nmse: nmse.0,
        },
        std: Stats {
            psnr: psnr.1,
            ssim: ssim.1,
            ssim3d: ssim3d.map(|s| s.1),
            mae: mae.1,
            nmse: nmse.1,
        },
    }
}

/// Fails unless the two volumes share their grid.
fn check_same_grid(pred: &Volume, real: &Volume) -> anyhow::Result<()> {
    let (p, r) = (&pred.meta.source, &real.meta.source);
    if pred.dims != real.dims {
        bail!(
            "{} has dims {:?} but {} has {:?}",
            p.display(),
            pred.dims,
            r.display(),
            real.dims
        );
    }
    let (pa, ra) = (pred.stored_affine(), real.stored_affine());
    let worst = pa
        .iter()
        .flatten()
        .zip(ra.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    if worst > 1e-3 {
        bail!(
            "{} and {} have different affines (they differ by up to {worst:.4})",
            p.display(),
            r.display()
        );
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Two files are a pair whatever their names; folders pair by subject.
    let pairs = if args.pred.is_file() && args.real.is_file() {
        vec![(
            Entry {
                key: stem(&args.pred),
                path: args.pred.clone(),
            },
            Entry {
                key: stem(&args.real),
                path: args.real.clone(),
            },
        )]
    } else {
        pair(
            volumes(&args.pred, args.pred_name.as_deref())?,
            volumes(&args.real, args.real_name.as_deref())?,
            false,
        )?
    };
    let opts = EvalOptions {
        axis: args.axis as usize,
        mask_nonzero: args.mask == Mask::Nonzero,
        data_range: args.data_range,
        window: if args.gaussian {
            Window::Gaussian(1.5)
        } else {
            Window::Uniform(7)
        },
    };
    let bar = super::counting_bar(pairs.len(), "subjects");
    let mut rows = Vec::new();
    for (p, r) in &pairs {
        let pred = read(&p.path, &ReadOptions::default())?;
        let real = read(&r.path, &ReadOptions::default())?;
        check_same_grid(&pred, &real)?;
        let scores = evaluate(&pred.data, &real.data, real.dims, &opts).with_context(|| {
            format!("scoring {} against {}", p.path.display(), r.path.display())
        })?;
        rows.push(SubjectRow {
            subject: p.key.clone(),
            scores,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();

    let summary = summarize(&rows);
    println!(
        "{:<32} {:>9} {:>8} {:>8} {:>10} {:>8}",
        "subject", "PSNR dB", "SSIM", "SSIM3D", "MAE", "NMSE"
    );
    for r in &rows {
        let s = &r.scores;
        println!(
            "{:<32} {:>9.3} {:>8.4} {:>8} {:>10.4} {:>8.4}",
            r.subject,
            s.psnr,
            s.ssim,
            fmt_opt(s.ssim3d),
            s.mae,
            s.nmse
        );
    }
    let (m, d) = (&summary.mean, &summary.std);
    println!(
        "{:<32} {:>9} {:>8} {:>8} {:>10} {:>8}",
        format!("mean +- std ({} subjects)", rows.len()),
        format!("{:.2}+-{:.2}", m.psnr, d.psnr),
        format!("{:.3}+-{:.3}", m.ssim, d.ssim),
        m.ssim3d.map_or("-".into(), |v| format!("{v:.3}")),
        format!("{:.2}+-{:.2}", m.mae, d.mae),
        format!("{:.3}", m.nmse)
    );
    if let Some(path) = &args.json {
        let doc = serde_json::json!({"subjects": rows, "mean": summary.mean, "std": summary.std});
        write_atomic(path, |w| {
            serde_json::to_writer_pretty(&mut *w, &doc).map_err(std::io::Error::other)
        })
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.csv {
        write_atomic(path, |w| {
            writeln!(w, "subject,psnr,ssim,ssim3d,mae,nmse")?;
            for r in &rows {
                let s = &r.scores;
                let s3 = s.ssim3d.map_or(String::new(), |v| v.to_string());
                writeln!(
                    w,
                    "{},{},{},{},{},{}",
                    r.subject, s.psnr, s.ssim, s3, s.mae, s.nmse
                )?;
            }
            Ok(())
        })
        .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

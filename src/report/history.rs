//! A run's history (one record per epoch) as CSV and as an HTML page with loss curves and
//! sample grids.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::write_atomic;

/// Validation scores in normalised units (data range 2).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValScores {
    pub psnr: f64,
    pub ssim: f64,
    pub mae: f64,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub iteration: u64,
    pub lr: f64,
    pub seconds: f64,
    /// Mean of each loss over the epoch's iterations.
    pub losses: Vec<(String, f32)>,
    pub val: Option<ValScores>,
    /// Sample grid of this epoch, relative to the run folder.
    pub sample: Option<String>,
}

/// CSV: epoch, iteration, lr, seconds, every loss, val_psnr, val_ssim, val_mae.
pub fn write_csv(path: &Path, history: &[EpochRecord]) -> std::io::Result<()> {
    let names: Vec<&str> = history
        .first()
        .map(|r| r.losses.iter().map(|(n, _)| n.as_str()).collect())
        .unwrap_or_default();
    write_atomic(path, |w| {
        writeln!(
            w,
            "epoch,iteration,lr,seconds,{},val_psnr,val_ssim,val_mae",
            names.join(",")
        )?;
        for r in history {
            let losses: Vec<String> = r.losses.iter().map(|(_, v)| v.to_string()).collect();
            let val = r.val.map_or(",,".to_string(), |v| {
                format!("{},{},{}", v.psnr, v.ssim, v.mae)
            });
            writeln!(
                w,
                "{},{},{},{:.3},{},{}",
                r.epoch,
                r.iteration,
                r.lr,
                r.seconds,
                losses.join(","),
                val
            )?;
        }
        Ok(())
    })
}

/// One SVG line chart of `series` (name, points).
fn svg_chart(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h, m) = (520.0, 220.0, 36.0);
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .filter(|p| p.1.is_finite())
        .collect();
    if all.is_empty() {
        return String::new();
    }
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let sx = |x: f64| m + (x - x0) / (x1 - x0).max(1e-12) * (w - 2.0 * m);
    let sy = |y: f64| h - m - (y - y0) / (y1 - y0).max(1e-12) * (h - 2.0 * m);
    let colors = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    let mut svg = format!(
        "<svg width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\" style=\"border:1px solid #ccc;margin:4px\">"
    );
    let _ = write!(
        svg,
        "<text x=\"{m}\" y=\"16\" font-size=\"13\">{title} (min {y0:.4}, max {y1:.4})</text>"
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points: Vec<String> = pts
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{color}\">{name}</text>",
            w - m - 60.0,
            30.0 + 12.0 * i as f64
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Writes `report.html`: loss curves, validation curves and table, and the sample grids.
pub fn write_html(path: &Path, title: &str, history: &[EpochRecord]) -> std::io::Result<()> {
    let names: Vec<String> = history
        .first()
        .map(|r| r.losses.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let loss_series: Vec<(String, Vec<(f64, f64)>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.clone(),
                history
                    .iter()
                    .map(|r| (r.epoch as f64, r.losses[i].1 as f64))
                    .collect(),
            )
        })
        .collect();
    let val: Vec<&EpochRecord> = history.iter().filter(|r| r.val.is_some()).collect();
    let psnr = vec![(
        "PSNR".to_string(),
        val.iter()
            .map(|r| (r.epoch as f64, r.val.unwrap().psnr))
            .collect(),
    )];
    let ssim = vec![(
        "SSIM".to_string(),
        val.iter()
            .map(|r| (r.epoch as f64, r.val.unwrap().ssim))
            .collect(),
    )];
    let mut html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head><body style=\"font-family:sans-serif\"><h1>{title}</h1>"
    );
    html.push_str("<h2>Losses (epoch means)</h2>");
    html.push_str(&svg_chart("losses", &loss_series));
    if !val.is_empty() {
        html.push_str("<h2>Validation (normalised units, data range 2)</h2>");
        html.push_str(&svg_chart("PSNR dB", &psnr));
        html.push_str(&svg_chart("SSIM", &ssim));
        html.push_str("<table border=\"1\" cellpadding=\"4\"><tr><th>epoch</th><th>PSNR</th><th>SSIM</th><th>MAE</th></tr>");
        for r in &val {
            let v = r.val.unwrap();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{:.3}</td><td>{:.4}</td><td>{:.4}</td></tr>",
                r.epoch, v.psnr, v.ssim, v.mae
            );
        }
        html.push_str("</table>");
    }
    html.push_str("<h2>Samples: real A | fake B | real B</h2>");
    for r in history.iter().rev().filter(|r| r.sample.is_some()) {
        let _ = write!(
            html,
            "<p>epoch {}<br><img src=\"{}\" style=\"image-rendering:pixelated;width:768px\"></p>",
            r.epoch,
            r.sample.as_ref().unwrap()
        );
    }
    html.push_str("</body></html>");
    write_atomic(path, |w| w.write_all(html.as_bytes()))
}

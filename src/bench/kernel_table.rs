//! The table `mrgan bench kernels` prints and writes (rows, peaks, CSV), and the CUDA issue's
//! performance floor judged from it: every conv primitive on resnet_9blocks' residual block
//! (256 channels, 64 x 64, 3 x 3) at batch 1 at 40% or more of the device's fp32 peak.
//! Plain data, no CUDA: the measuring is `bench::kernels` (feature `cuda`).

use std::io::Write;

use super::layers;
use crate::device::tiled_conv::ConvPass;
use crate::ops::conv::ConvGeometry;

/// One measured kernel.
#[derive(Clone, Debug)]
pub struct KernelRow {
    pub kernel: String,
    pub batch: usize,
    pub ms: f64,
    /// GFLOP/s for convs, GB/s for memory-bound kernels.
    pub rate: f64,
    pub unit: &'static str,
    /// The conv's shape, for convs: lets a baseline (benches/torch_kernels.py) time the same.
    pub geometry: Option<ConvGeometry>,
    /// Tiled convs: tile shape and K splits (`TiledLaunch::label`); empty otherwise.
    pub tiles: String,
    /// The conv primitive, for convs.
    pub pass: Option<ConvPass>,
    /// A tiled conv in the tile shape the backend's plan picks (not one of the `@shape` rows).
    pub planned_tiles: bool,
}

/// The peaks the rates are measured against, from the same run.
#[derive(Clone, Copy, Debug)]
pub struct Peaks {
    /// Device-to-device copy, GB/s (bytes read + written).
    pub bandwidth: f64,
    /// `gemm_f32` at 4096^3, GFLOP/s.
    pub gemm: f64,
    /// The device's nominal fp32 peak, GFLOP/s (multiprocessors x clock x FP32 lanes x 2),
    /// where the driver says enough to work it out.
    pub fp32: Option<f64>,
}

/// The table, with each rate as a percentage of its peak measured in this run (GB/s rows of
/// the copy bandwidth, GFLOP/s rows of the dense GEMM).
pub fn write_table(
    out: &mut (impl Write + ?Sized),
    device: &str,
    rows: &[KernelRow],
    peaks: Peaks,
) -> std::io::Result<()> {
    let best_conv = rows
        .iter()
        .filter(|r| r.geometry.is_some())
        .map(|r| r.rate)
        .fold(0.0, f64::max);
    let fp32 = peaks.fp32.map_or("fp32 peak unknown".into(), |p| {
        format!("fp32 peak {p:.0} GFLOP/s")
    });
    writeln!(
        out,
        "{device}: copy bandwidth {:.0} GB/s, dense GEMM {:.0} GFLOP/s (the peaks below); fastest conv {best_conv:.0} GFLOP/s; {fp32}",
        peaks.bandwidth, peaks.gemm
    )?;
    writeln!(
        out,
        "{:<48} {:>5} {:>10} {:>12} {:>8}  tiles/splits",
        "kernel", "batch", "ms", "rate", "% peak"
    )?;
    for r in rows {
        let peak = if r.unit == "GB/s" {
            peaks.bandwidth
        } else {
            peaks.gemm
        };
        writeln!(
            out,
            "{:<48} {:>5} {:>10.3} {:>7.0} {:<7} {:>5.1}%  {}",
            r.kernel,
            r.batch,
            r.ms,
            r.rate,
            r.unit,
            100.0 * r.rate / peak,
            r.tiles
        )?;
    }
    write_floor(out, rows, peaks)
}

/// CSV for machines; conv rows carry their forward conv's shape (2D: height, width, square
/// kernel, stride and padding), empty for the others.
pub fn write_csv(out: &mut (impl Write + ?Sized), rows: &[KernelRow]) -> std::io::Result<()> {
    writeln!(
        out,
        "kernel,batch,ms,rate,unit,c_in,c_out,height,width,kernel_size,stride,pad,tiles"
    )?;
    for r in rows {
        let shape = match &r.geometry {
            Some(g) => format!(
                "{},{},{},{},{},{},{}",
                g.c_in, g.c_out, g.input[1], g.input[2], g.kernel[2], g.stride[2], g.pad[2]
            ),
            None => ",,,,,,".into(),
        };
        writeln!(
            out,
            "{},{},{:.4},{:.2},{},{shape},{}",
            r.kernel, r.batch, r.ms, r.rate, r.unit, r.tiles
        )?;
    }
    Ok(())
}

/// The share of the fp32 peak the floor asks of each primitive.
pub const FLOOR_SHARE: f64 = 0.4;

/// The residual block at batch 1: the shape the floor is judged on.
pub fn floor_geometry() -> ConvGeometry {
    layers::resnet_9blocks()
        .into_iter()
        .find(|l| l.name.starts_with("block"))
        .expect("resnet_9blocks has a residual block")
        .geometry(1)
}

/// One primitive on the floor's shape: its fastest row (any kernel or tile shape, as
/// `--autotune` could pick) and the tiled kernel as the static plan launches it.
pub struct FloorRow<'a> {
    pub pass: ConvPass,
    pub best: &'a KernelRow,
    pub planned: Option<&'a KernelRow>,
}

/// The floor's rows, for each primitive measured on the floor's shape.
pub fn floor_rows(rows: &[KernelRow]) -> Vec<FloorRow<'_>> {
    let g = floor_geometry();
    [ConvPass::Fprop, ConvPass::Dgrad, ConvPass::Wgrad]
        .into_iter()
        .filter_map(|pass| {
            let on_shape = || {
                rows.iter()
                    .filter(move |r| r.pass == Some(pass) && r.batch == 1 && r.geometry == Some(g))
            };
            let best = on_shape().max_by(|a, b| a.rate.total_cmp(&b.rate))?;
            let planned = on_shape().find(|r| r.planned_tiles);
            Some(FloorRow {
                pass,
                best,
                planned,
            })
        })
        .collect()
}

/// The floor's verdict per primitive, after the table.
fn write_floor(
    out: &mut (impl Write + ?Sized),
    rows: &[KernelRow],
    peaks: Peaks,
) -> std::io::Result<()> {
    let floor = peaks.fp32.map(|p| FLOOR_SHARE * p);
    match floor {
        Some(f) => writeln!(
            out,
            "floor: each primitive on the residual block (256 ch, 64x64, 3x3, batch 1) at {:.0}% of the fp32 peak, {:.1} TFLOP/s",
            100.0 * FLOOR_SHARE,
            f / 1e3
        )?,
        None => writeln!(
            out,
            "floor: the driver gave no clock rate or an unknown architecture, so the fp32 peak and the floor are unknown; the residual block at batch 1:"
        )?,
    }
    for row in floor_rows(rows) {
        let r = row.best;
        let verdict = match floor {
            Some(f) if r.rate >= f => "met",
            Some(_) => "NOT met",
            None => "not judged",
        };
        let planned = row.planned.map_or(String::new(), |p| {
            format!("; as planned {:.1} TFLOP/s ({})", p.rate / 1e3, p.tiles)
        });
        writeln!(
            out,
            "  {:<6} {:>6.1} TFLOP/s  {verdict}  ({}, {}){planned}",
            format!("{:?}", row.pass).to_lowercase(),
            r.rate / 1e3,
            r.kernel,
            r.tiles
        )?;
    }
    Ok(())
}

/// The nominal fp32 peak in GFLOP/s: `multiprocessors` x clock x FP32 lanes per
/// multiprocessor x 2 (an FFMA is two flops). None for a missing attribute or an
/// architecture whose lane count this does not know.
pub fn fp32_peak_gflops(
    multiprocessors: i32,
    clock_khz: i32,
    compute_capability: (i32, i32),
) -> Option<f64> {
    let lanes = match compute_capability {
        (7, _) | (8, 0) => 64,
        (8, _) | (9, 0) | (10, _) | (12, _) => 128,
        _ => return None,
    };
    (multiprocessors > 0 && clock_khz > 0)
        .then(|| multiprocessors as f64 * clock_khz as f64 * 1e3 * lanes as f64 * 2.0 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp32_peaks_of_known_gpus() {
        // H100 SXM: 132 SMs at 1,980 MHz; A100: 108 at 1,410 MHz (datasheets: 67 and 19.5 TFLOP/s).
        let h100 = fp32_peak_gflops(132, 1_980_000, (9, 0)).unwrap();
        assert!((h100 - 66_908.0).abs() < 1.0, "{h100}");
        let a100 = fp32_peak_gflops(108, 1_410_000, (8, 0)).unwrap();
        assert!((a100 - 19_492.0).abs() < 1.0, "{a100}");
        assert_eq!(fp32_peak_gflops(132, 0, (9, 0)), None);
        assert_eq!(fp32_peak_gflops(132, 1_980_000, (3, 5)), None);
    }

    fn row(
        pass: ConvPass,
        batch: usize,
        geometry: ConvGeometry,
        rate: f64,
        kernel: &str,
    ) -> KernelRow {
        KernelRow {
            kernel: kernel.into(),
            batch,
            ms: 1.0,
            rate,
            unit: "GFLOP/s",
            geometry: Some(geometry),
            tiles: if kernel.contains("tiled") {
                "64x64/1".into()
            } else {
                String::new()
            },
            pass: Some(pass),
            planned_tiles: kernel.ends_with("-tiled"),
        }
    }

    #[test]
    fn the_floor_takes_each_primitives_fastest_row_on_the_residual_block() {
        let block = floor_geometry();
        assert_eq!((block.c_in, block.c_out, block.batch), (256, 256, 1));
        let other = layers::resnet_9blocks()[0].geometry(1);
        let rows = vec![
            row(ConvPass::Fprop, 1, block, 20_000.0, "fprop-tiled"),
            row(ConvPass::Fprop, 1, block, 30_000.0, "fprop-tiled@128x128"),
            row(ConvPass::Fprop, 16, block, 40_000.0, "fprop batch 16"),
            row(ConvPass::Dgrad, 1, other, 50_000.0, "dgrad other layer"),
            row(ConvPass::Dgrad, 1, block, 12_000.0, "dgrad"),
            row(ConvPass::Dgrad, 1, block, 10_000.0, "dgrad-tiled"),
        ];
        let chosen: Vec<(ConvPass, &str, Option<&str>)> = floor_rows(&rows)
            .into_iter()
            .map(|f| {
                (
                    f.pass,
                    f.best.kernel.as_str(),
                    f.planned.map(|p| p.kernel.as_str()),
                )
            })
            .collect();
        assert_eq!(
            chosen,
            vec![
                (ConvPass::Fprop, "fprop-tiled@128x128", Some("fprop-tiled")),
                (ConvPass::Dgrad, "dgrad", Some("dgrad-tiled"))
            ]
        );
        let peaks = Peaks {
            bandwidth: 3000.0,
            gemm: 40_000.0,
            fp32: Some(66_908.0),
        };
        let mut text = Vec::new();
        write_table(&mut text, "test GPU", &rows, peaks).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("26.8 TFLOP/s"), "{text}");
        assert!(text.contains("fprop    30.0 TFLOP/s  met"), "{text}");
        assert!(text.contains("dgrad    12.0 TFLOP/s  NOT met"), "{text}");
        assert!(text.contains("as planned 20.0 TFLOP/s (64x64/1)"), "{text}");
    }
}

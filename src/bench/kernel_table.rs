//! The table `mrgan bench kernels` prints and writes (rows, peaks, CSV), and the CUDA issue's
//! performance floor judged from it: every conv primitive on resnet_9blocks' residual block
//! (256 channels, 64 x 64, 3 x 3) at batch 1 at 40% or more of the device's fp32 peak.
//! Plain data, no CUDA: the measuring is `bench::kernels` (feature `cuda`).

use std::io::Write;

use super::layers;
use crate::device::tiled_conv::{ConvPass, TiledLaunch};
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
    /// Tiled convs and the dense GEMM: how they were launched (tile shape, K splits).
    pub launch: Option<TiledLaunch>,
    /// The conv primitive, for convs.
    pub pass: Option<ConvPass>,
    /// A tiled conv in the tile shape the backend's plan picks (not one of the `@shape` rows).
    pub planned_tiles: bool,
    /// A launch timed only for the split sweep on the floor's shape: shown in the sweep's
    /// matrix (`write_sweep`) rather than as a row of the table; in the CSV like any row.
    pub sweep: bool,
}

impl KernelRow {
    /// The launch's tile shape and K splits (`TiledLaunch::label`), or nothing.
    fn tiles(&self) -> String {
        self.launch.map_or(String::new(), |l| l.label())
    }
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
    for r in rows.iter().filter(|r| !r.sweep) {
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
            r.tiles()
        )?;
    }
    write_sweep(out, rows)?;
    write_floor(out, rows, peaks)
}

/// Every tiled launch timed on the floor's shape as a matrix, TFLOP/s: a line per primitive
/// and tile shape, a column per K split (1 to 16; others listed after), the plan's launch
/// starred. Nothing when no tiled launch was timed on that shape.
fn write_sweep(out: &mut (impl Write + ?Sized), rows: &[KernelRow]) -> std::io::Result<()> {
    use std::collections::BTreeMap;
    const COLUMNS: usize = 16;
    let g = floor_geometry();
    // (pass in order, tile shape) -> the pass, (rate, planned) by K splits, and stream K's
    // by blocks.
    type Cells = BTreeMap<usize, (f64, bool)>;
    let mut lines: BTreeMap<(u8, String), (ConvPass, Cells, Cells)> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.batch == 1 && r.geometry == Some(g))
    {
        let (Some(pass), Some(launch)) = (r.pass, r.launch) else {
            continue;
        };
        let line = lines
            .entry((pass as u8, launch.shape.label()))
            .or_insert_with(|| (pass, Cells::new(), Cells::new()));
        let cell = if launch.stream_k {
            line.2.entry(launch.grid.0 as usize)
        } else {
            line.1.entry(launch.splits)
        };
        cell.or_insert((r.rate, r.planned_tiles)).1 |= r.planned_tiles;
    }
    if lines.is_empty() {
        return Ok(());
    }
    writeln!(
        out,
        "split sweep on the floor's shape (residual block, batch 1), TFLOP/s by tile shape and K splits (* as planned; /skN: stream K on N blocks):"
    )?;
    write!(out, "{:<6} {:<8}", "pass", "tiles")?;
    for splits in 1..=COLUMNS {
        write!(out, " {splits:>5}")?;
    }
    writeln!(out, "  others")?;
    for ((_, shape), (pass, cells, stream_k)) in &lines {
        write!(out, "{:<6} {shape:<8}", pass.name())?;
        let cell = |(rate, planned): (f64, bool)| {
            format!("{:.1}{}", rate / 1e3, if planned { "*" } else { "" })
        };
        for splits in 1..=COLUMNS {
            let text = cells.get(&splits).map_or("-".into(), |&c| cell(c));
            write!(out, " {text:>5}")?;
        }
        let others: Vec<String> = cells
            .range(COLUMNS + 1..)
            .map(|(splits, &c)| format!("/{splits} {}", cell(c)))
            .chain(
                stream_k
                    .iter()
                    .map(|(blocks, &c)| format!("/sk{blocks} {}", cell(c))),
            )
            .collect();
        writeln!(out, "  {}", others.join(", "))?;
    }
    Ok(())
}

/// CSV for machines; conv rows carry their forward conv's shape (height, width, square or
/// cubic kernel, stride, padding and what it holds: zero, reflect or replicate; depth, 1 in
/// 2D), empty for the others.
pub fn write_csv(out: &mut (impl Write + ?Sized), rows: &[KernelRow]) -> std::io::Result<()> {
    writeln!(
        out,
        "kernel,batch,ms,rate,unit,c_in,c_out,height,width,kernel_size,stride,pad,pad_mode,depth,tiles"
    )?;
    for r in rows {
        let shape = match &r.geometry {
            Some(g) => format!(
                "{},{},{},{},{},{},{},{},{}",
                g.c_in,
                g.c_out,
                g.input[1],
                g.input[2],
                g.kernel[2],
                g.stride[2],
                g.pad[2],
                format!("{:?}", g.pad_mode).to_lowercase(),
                g.input[0]
            ),
            None => ",,,,,,,,".into(),
        };
        writeln!(
            out,
            "{},{},{:.4},{:.2},{},{shape},{}",
            r.kernel,
            r.batch,
            r.ms,
            r.rate,
            r.unit,
            r.tiles()
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

/// One primitive on the floor's shape: its fastest row (any kernel or tile shape; Winograd's
/// wgrad at the direct conv's FLOP count, an effective rate, as cuDNN's are compared) and
/// the tiled kernel as the static plan launches it.
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
    let floor_rows = floor_rows(rows);
    if floor_rows.is_empty() {
        writeln!(
            out,
            "  (not timed in this run: --only left the residual block out)"
        )?;
    }
    for row in floor_rows {
        let r = row.best;
        let verdict = match floor {
            Some(f) if r.rate >= f => "met",
            Some(_) => "NOT met",
            None => "not judged",
        };
        let planned = row.planned.map_or(String::new(), |p| {
            format!("; as planned {:.1} TFLOP/s ({})", p.rate / 1e3, p.tiles())
        });
        writeln!(
            out,
            "  {:<6} {:>6.1} TFLOP/s  {verdict}  ({}, {}){planned}",
            row.pass.name(),
            r.rate / 1e3,
            r.kernel,
            r.tiles()
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
    use crate::device::tiled_conv::TileShape;

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
            launch: kernel
                .contains("tiled")
                .then(|| TiledLaunch::with_splits(pass.gemm(&geometry), TileShape::Square, 1)),
            pass: Some(pass),
            planned_tiles: kernel.ends_with("-tiled"),
            sweep: kernel.contains('/'),
        }
    }

    /// The printed table of `rows` on a GPU with an H100's fp32 peak.
    fn table_text(rows: &[KernelRow]) -> String {
        let peaks = Peaks {
            bandwidth: 3000.0,
            gemm: 40_000.0,
            fp32: Some(66_908.0),
        };
        let mut text = Vec::new();
        write_table(&mut text, "test GPU", rows, peaks).unwrap();
        String::from_utf8(text).unwrap()
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
        let text = table_text(&rows);
        assert!(text.contains("26.8 TFLOP/s"), "{text}");
        assert!(text.contains("fprop    30.0 TFLOP/s  met"), "{text}");
        assert!(text.contains("dgrad    12.0 TFLOP/s  NOT met"), "{text}");
        assert!(text.contains("as planned 20.0 TFLOP/s (64x64/1)"), "{text}");
    }

    #[test]
    fn the_split_sweep_is_a_matrix_after_the_table() {
        let block = floor_geometry();
        let gemm = ConvPass::Dgrad.gemm(&block);
        let split = |shape, splits| TiledLaunch::with_splits(gemm, shape, splits);
        let launch = |kernel: &str, launch: TiledLaunch, rate: f64| KernelRow {
            launch: Some(launch),
            ..row(ConvPass::Dgrad, 1, block, rate, kernel)
        };
        let rows = vec![
            launch("dgrad-tiled", split(TileShape::Large, 7), 24_500.0),
            launch("dgrad-tiled@64x64", split(TileShape::Square, 5), 18_000.0),
            launch(
                "dgrad-tiled@128x128/3",
                split(TileShape::Large, 3),
                24_700.0,
            ),
            launch(
                "dgrad-tiled@128x128/29",
                split(TileShape::Large, 29),
                20_000.0,
            ),
            launch(
                "dgrad-tiled@128x128/sk264",
                TiledLaunch::stream_k(gemm, 132),
                28_000.0,
            ),
        ];
        let text = table_text(&rows);
        // Sweep rows only in the matrix; the plan's and the other shape's in both.
        assert!(!text.contains("dgrad-tiled@128x128/3 "), "{text}");
        assert!(text.contains("dgrad-tiled@64x64 "), "{text}");
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("no line {start:?} in {text}"))
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let large = line("dgrad  128x128");
        // pass, tiles, then splits 1 to 16, then the others.
        assert_eq!(large[2 + 2], "24.7", "{text}");
        assert_eq!(large[2 + 6], "24.5*", "{text}");
        assert_eq!(large[2 + 15], "-", "{text}");
        assert_eq!(large[18..], ["/29", "20.0,", "/sk264", "28.0"], "{text}");
        assert_eq!(line("dgrad  64x64")[2 + 4], "18.0", "{text}");
        // The floor takes the fastest launch, sweep rows included.
        assert!(text.contains("dgrad    28.0 TFLOP/s  met"), "{text}");
    }
}

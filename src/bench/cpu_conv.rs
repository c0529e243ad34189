//! CPU conv primitives against the raw GEMM they reduce to.
//!
//! For each layer, fprop, dgrad and wgrad are timed on random data, and so is one `gemm` call
//! on the primitive's equivalent matrix product with the same operand layouts, in the same
//! run. The ratio conv / GEMM throughput is what im2col / col2im and tiling cost.

use std::io::Write;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::Xoshiro256PlusPlus;
use rand_distr::{Distribution, StandardNormal};

use super::layers::ConvLayer;
use crate::ops::conv::ConvGeometry;
use crate::ops::conv::cpu::{self, MatLayout};

/// One primitive of one layer.
#[derive(Clone, Debug)]
pub struct Row {
    pub net: &'static str,
    pub layer: String,
    pub primitive: &'static str,
    /// The equivalent GEMM: dst[m x n] = a[m x k] b[k x n].
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub conv_ms: f64,
    pub conv_gflops: f64,
    pub gemm_gflops: f64,
}

impl Row {
    pub fn ratio(&self) -> f64 {
        self.conv_gflops / self.gemm_gflops
    }
}

pub fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..len).map(|_| StandardNormal.sample(&mut rng)).collect()
}

/// Median wall times of `a` and `b` over `reps` runs each, after one warm-up run of each,
/// in seconds. Runs alternate, so drift of a shared, noisy machine hits both alike.
pub fn median_times(reps: usize, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    fn timed(f: &mut impl FnMut()) -> f64 {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64()
    }
    a();
    b();
    let (mut ta, mut tb): (Vec<f64>, Vec<f64>) = (0..reps.max(1))
        .map(|_| (timed(&mut a), timed(&mut b)))
        .unzip();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    (median(&mut ta), median(&mut tb))
}

/// The three primitives of one geometry, with their equivalent GEMM layouts
/// (dst, lhs, rhs), as `cpu::fprop` / `dgrad` / `wgrad` use them for a single tile.
pub fn equivalents(g: &ConvGeometry) -> [(&'static str, MatLayout, MatLayout, MatLayout); 3] {
    let (k, p, c) = (g.patch_len(), g.output_volume(), g.c_out);
    let rm = MatLayout::row_major;
    [
        ("fprop", rm(c, p), rm(c, k), rm(k, p)),
        ("dgrad", rm(k, p), rm(c, k).t(), rm(c, p)),
        ("wgrad", rm(c, k), rm(c, p), rm(k, p).t()),
    ]
}

/// Benchmarks every layer at batch 1; `progress` is told each finished layer.
pub fn run(layers: &[ConvLayer], reps: usize, mut progress: impl FnMut(usize, usize)) -> Vec<Row> {
    let mut rows = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let g = layer.geometry(1);
        let x = random(g.input_shape().numel(), 1);
        let w = random(g.weight_shape().numel(), 2);
        let dy = random(g.output_shape().numel(), 3);
        let mut out_y = vec![0.0; dy.len()];
        let mut out_x = vec![0.0; x.len()];
        let mut out_w = vec![0.0; w.len()];
        let flops = 2.0 * g.macs() as f64;
        for (primitive, d, l, r) in equivalents(&g) {
            let lhs = random(l.rows * l.cols, 4);
            let rhs = random(r.rows * r.cols, 5);
            let mut dst = vec![0.0f32; d.rows * d.cols];
            let gemm = || cpu::matmul(&mut dst, d, &lhs, l, &rhs, r, false);
            let (conv_s, gemm_s) = match primitive {
                "fprop" => median_times(reps, || cpu::fprop(&x, &w, &g, &mut out_y), gemm),
                "dgrad" => median_times(reps, || cpu::dgrad(&dy, &w, &g, &mut out_x), gemm),
                _ => median_times(reps, || cpu::wgrad(&x, &dy, &g, &mut out_w), gemm),
            };
            rows.push(Row {
                net: layer.net,
                layer: layer.name.clone(),
                primitive,
                m: d.rows,
                n: d.cols,
                k: l.cols,
                conv_ms: conv_s * 1e3,
                conv_gflops: flops / conv_s / 1e9,
                gemm_gflops: flops / gemm_s / 1e9,
            });
        }
        progress(i + 1, layers.len());
    }
    rows
}

/// A table for people.
pub fn write_table(rows: &[Row], out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<15} {:<12} {:<6} {:>6} {:>6} {:>6} {:>9} {:>10} {:>10} {:>6}",
        "net", "layer", "pass", "M", "N", "K", "conv ms", "conv GF/s", "GEMM GF/s", "ratio"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<15} {:<12} {:<6} {:>6} {:>6} {:>6} {:>9.2} {:>10.1} {:>10.1} {:>5.0}%",
            r.net,
            r.layer,
            r.primitive,
            r.m,
            r.n,
            r.k,
            r.conv_ms,
            r.conv_gflops,
            r.gemm_gflops,
            100.0 * r.ratio()
        )?;
    }
    Ok(())
}

/// The same rows as CSV, for machines.
pub fn write_csv(rows: &[Row], out: &mut (impl Write + ?Sized)) -> std::io::Result<()> {
    writeln!(
        out,
        "net,layer,pass,m,n,k,conv_ms,conv_gflops,gemm_gflops,ratio"
    )?;
    for r in rows {
        writeln!(
            out,
            "{},{},{},{},{},{},{:.4},{:.3},{:.3},{:.4}",
            r.net,
            r.layer,
            r.primitive,
            r.m,
            r.n,
            r.k,
            r.conv_ms,
            r.conv_gflops,
            r.gemm_gflops,
            r.ratio()
        )?;
    }
    Ok(())
}

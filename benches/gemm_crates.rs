//! `cargo bench --bench gemm_crates`: the `gemm` crate against `matrixmultiply` on the
//! equivalent GEMMs of every conv primitive of the reference networks (256x256, batch 1),
//! both with all cores, same operand layouts, interleaved runs. This is the measurement
//! behind the CPU backend's choice of GEMM crate.

use mrgan::bench::cpu_conv::{equivalents, median_times, random};
use mrgan::bench::layers;
use mrgan::ops::conv::cpu::{MatLayout, matmul};

fn matrixmultiply(
    dst: &mut [f32],
    d: MatLayout,
    lhs: &[f32],
    l: MatLayout,
    rhs: &[f32],
    r: MatLayout,
) {
    // SAFETY: the layouts describe the slices exactly (same as `matmul` asserts).
    unsafe {
        matrixmultiply::sgemm(
            d.rows,
            l.cols,
            d.cols,
            1.0,
            lhs.as_ptr(),
            l.row_stride as isize,
            l.col_stride as isize,
            rhs.as_ptr(),
            r.row_stride as isize,
            r.col_stride as isize,
            0.0,
            dst.as_mut_ptr(),
            d.row_stride as isize,
            d.col_stride as isize,
        );
    }
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("MATMUL_NUM_THREADS").is_none() {
        // SAFETY: set before any other thread exists.
        unsafe { std::env::set_var("MATMUL_NUM_THREADS", threads.to_string()) };
    }
    println!("{threads} threads for both crates");
    println!(
        "{:<15} {:<12} {:<6} {:>6} {:>6} {:>6} {:>10} {:>10} {:>7}",
        "net", "layer", "pass", "M", "N", "K", "gemm GF/s", "mm GF/s", "gemm/mm"
    );
    let all = [
        layers::unet_256(),
        layers::resnet_9blocks(),
        layers::patchgan(),
    ]
    .concat();
    let mut log_sum = 0.0;
    let mut count = 0;
    for layer in &all {
        let g = layer.geometry(1);
        for (pass, d, l, r) in equivalents(&g) {
            let lhs = random(l.rows * l.cols, 1);
            let rhs = random(r.rows * r.cols, 2);
            let mut out_a = vec![0.0f32; d.rows * d.cols];
            let mut out_b = vec![0.0f32; d.rows * d.cols];
            let (ta, tb) = median_times(
                5,
                || matmul(&mut out_a, d, &lhs, l, &rhs, r, false),
                || matrixmultiply(&mut out_b, d, &lhs, l, &rhs, r),
            );
            let flops = 2.0 * (d.rows * d.cols * l.cols) as f64;
            let (ga, gb) = (flops / ta / 1e9, flops / tb / 1e9);
            log_sum += (ga / gb).ln();
            count += 1;
            println!(
                "{:<15} {:<12} {:<6} {:>6} {:>6} {:>6} {:>10.1} {:>10.1} {:>7.2}",
                layer.net,
                layer.name,
                pass,
                d.rows,
                d.cols,
                l.cols,
                ga,
                gb,
                ga / gb
            );
        }
    }
    println!(
        "geometric mean gemm / matrixmultiply throughput: {:.2}",
        (log_sum / count as f64).exp()
    );
}

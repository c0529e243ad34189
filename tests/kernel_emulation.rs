//! The CUDA conv kernels' logic checked without a GPU: `tests/emulation/` compiles
//! `kernels/conv.cu` as C++20 for the host (one thread per CUDA thread, `__syncthreads` as a
//! barrier) and runs each kernel with the launch shape the CUDA backend uses; the results are
//! compared with the CPU ops. This catches indexing, tiling and synchronisation-order bugs on
//! every machine; the device's own behaviour (memory model, speed) is still for
//! `tests/cuda_parity.rs` on a GPU. Skips, saying why, when no C++20 compiler is found.
//!
//! Tolerance: the host evaluates the same f32 sums in the kernels' order, the CPU op in its
//! GEMM's order: 1e-4 of the output's largest magnitude (sums of up to 576 terms of +-3).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mrgan::ops::conv::ConvGeometry;
use mrgan::ops::conv::cpu as conv;
use mrgan::ops::elementwise::cpu::uniform_at;

/// Builds the emulated conv kernels into `dir`, or says why it cannot.
fn build_driver(dir: &Path) -> Result<PathBuf, String> {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".into());
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulation/conv_driver.cpp");
    let exe = dir.join("conv_driver");
    let out = Command::new(&compiler)
        .args(["-std=c++20", "-O1", "-pthread", "-Wno-unknown-pragmas"])
        .arg(&source)
        .arg("-o")
        .arg(&exe)
        .output()
        .map_err(|e| format!("no C++ compiler `{compiler}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{compiler}` could not build {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| uniform_at(seed, i as u64) * 6.0 - 3.0)
        .collect()
}

/// ConvParams of `kernels/conv.cu` (18 int32, in declaration order).
fn params(g: &ConvGeometry) -> Vec<i32> {
    let mut p = vec![g.batch, g.c_in, g.c_out];
    for v in [g.input, g.kernel, g.stride, g.pad, g.output] {
        p.extend(v);
    }
    p.into_iter().map(|v| v as i32).collect()
}

fn check(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite output (an element the kernel did not write?)"
    );
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0f32, f32::max);
    println!("{what}: max abs error {worst:.2e} (scale {scale:.1})");
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max abs error {worst} > {}",
        1e-4 * scale
    );
}

#[test]
fn emulated_conv_kernels_match_the_cpu() {
    let dir = std::env::temp_dir().join(format!("mrgan-kernel-emulation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let driver = match build_driver(&dir) {
        Ok(exe) => exe,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    for (k, g) in common::conv_test_geometries().iter().enumerate() {
        let x = values(g.input_shape().numel(), 20 + k as u64);
        let w = values(g.weight_shape().numel(), 30 + k as u64);
        let dy = values(g.output_shape().numel(), 40 + k as u64);
        let mut input: Vec<u8> = bytemuck::cast_slice(&params(g)).to_vec();
        for v in [&x, &w, &dy] {
            input.extend_from_slice(bytemuck::cast_slice(v));
        }
        let (in_path, out_path) = (dir.join("in.bin"), dir.join("out.bin"));
        std::fs::write(&in_path, input).unwrap();
        let status = Command::new(&driver)
            .arg(&in_path)
            .arg(&out_path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "case {k}: emulated kernels failed: {status}"
        );
        let out: Vec<f32> = bytemuck::pod_collect_to_vec(&std::fs::read(&out_path).unwrap());
        let (ny, nx) = (dy.len(), x.len());
        let (y_direct, rest) = out.split_at(ny);
        let (y_tiled, rest) = rest.split_at(ny);
        let (dx, dw) = rest.split_at(nx);

        let mut want = vec![0.0; ny];
        conv::fprop(&x, &w, g, &mut want);
        check(&format!("case {k} fprop"), y_direct, &want);
        check(&format!("case {k} fprop-tiled"), y_tiled, &want);
        let mut want = vec![0.0; nx];
        conv::dgrad(&dy, &w, g, &mut want);
        check(&format!("case {k} dgrad"), dx, &want);
        let mut want = vec![0.0; w.len()];
        conv::wgrad(&x, &dy, g, &mut want);
        check(&format!("case {k} wgrad"), dw, &want);
    }
    std::fs::remove_dir_all(&dir).ok();
}

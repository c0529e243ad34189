//! The two CPU conv paths agree: direct loops and im2col + GEMM, the latter with column
//! tiles of every size (including ones that split output rows), on odd 2D and 3D shapes.
//! Both run in f64, so they may differ only by summation order: 1e-12 relative.

use super::*;
use crate::ops::conv::ConvOptions;
use crate::tensor::Shape;

fn values(n: usize, seed: u64) -> Vec<f64> {
    // A cheap deterministic sequence in [-1, 1).
    (0..n)
        .map(|i| (((i as u64 + 1) * (seed * 2 + 1) * 2654435761) % 2000) as f64 / 1000.0 - 1.0)
        .collect()
}

fn assert_agree(what: &str, a: &[f64], b: &[f64]) {
    let scale = a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-12 * scale,
            "{what}: element {i}: {x} vs {y}"
        );
    }
}

#[test]
fn direct_and_tiled_gemm_paths_agree() {
    let cases: [(&[usize], &[usize], usize, usize); 4] = [
        (&[2, 3, 7, 6], &[3, 3, 3, 3], 1, 1),
        (&[1, 2, 9, 8], &[2, 2, 4, 4], 2, 1),
        (&[2, 2, 5, 4, 3], &[4, 2, 3, 3, 3], 2, 1),
        (&[1, 1, 6, 7, 5], &[1, 1, 2, 3, 2], 1, 0),
    ];
    for (x_dims, w_dims, stride, pad) in cases {
        let g = ConvGeometry::conv(
            "test",
            &Shape::new(x_dims),
            &Shape::new(w_dims),
            ConvOptions::new(stride, pad),
        )
        .unwrap();
        let x = values(g.input_shape().numel(), 1);
        let w = values(g.weight_shape().numel(), 2);
        let dy = values(g.output_shape().numel(), 3);
        let mut reference = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
        direct_fprop(&x, &w, &g, &mut reference.0);
        direct_dgrad(&dy, &w, &g, &mut reference.1);
        direct_wgrad(&x, &dy, &g, &mut reference.2);
        for tile in [1, 3, g.output[2] + 1, g.output_volume()] {
            let what = format!("{x_dims:?} * {w_dims:?} tile {tile}");
            let mut out = (vec![0.0; dy.len()], vec![0.0; x.len()], vec![0.0; w.len()]);
            gemm_fprop(&x, &w, &g, &mut out.0, tile);
            gemm_dgrad(&dy, &w, &g, &mut out.1, tile);
            gemm_wgrad(&x, &dy, &g, &mut out.2, tile);
            assert_agree(&format!("{what} fprop"), &out.0, &reference.0);
            assert_agree(&format!("{what} dgrad"), &out.1, &reference.1);
            assert_agree(&format!("{what} wgrad"), &out.2, &reference.2);
        }
    }
}

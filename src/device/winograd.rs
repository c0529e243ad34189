//! Winograd wgrad: the weight gradient of a 2D 3 x 3 conv at stride 1 (the ResNet
//! generators' 18 residual-block convs) with 16 multiplications per 2 x 2 tile of outputs
//! where the implicit GEMM spends 36 (F(2 x 2, 3 x 3) transposed; the formulas are in
//! `kernels/conv.cu`). On an H200, cuDNN's strict-fp32 wgrad of the residual block ran at an
//! effective 108.6 TFLOP/s at batch 16, above the FFMA peak of 67, so no GEMM matches it:
//! the tiled wgrad took 2.7 times as long (BENCHMARKS.md). Here dY and x are transformed
//! into U[16][c_out][tiles] and V[16][tiles][c_in], the batched GEMM multiplies each of the
//! 16 pairs with K split over blocks, and a last kernel adds the splits and transforms back.
//! Plain arithmetic with no CUDA in it, so the host emulation runs the same launches.

use crate::device::tiled_conv::{GemmSize, TileShape, TiledLaunch, dense_gemm_tile};
use crate::ops::conv::ConvGeometry;
use crate::ops::pad::PadMode;

/// Transformed positions per tile (4 x 4), and so GEMMs per launch.
pub const POSITIONS: usize = 16;
/// Tiles and channels per block of x's transform (`winograd_wgrad_x_f32`'s grid).
pub const X_BLOCK_TILES: usize = 32;
pub const X_BLOCK_CHANNELS: usize = 8;

/// A Winograd wgrad's launches on one geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinogradWgrad {
    /// Output tiles of 2 x 2 per image plane, down and across.
    pub tiles_h: usize,
    pub tiles_w: usize,
    /// Tiles over the batch: the GEMMs' depth.
    pub tiles: usize,
    /// The GEMMs' rows (c_out) and columns (c_in).
    pub rows: usize,
    pub columns: usize,
    /// K splits, and the tiles each takes (a multiple of the GEMM's K tile).
    pub splits: usize,
    pub k_chunk: usize,
}

impl WinogradWgrad {
    /// The launches for `g` on a GPU of `multiprocessors`, or None where the transform does
    /// not apply: 3D, a kernel other than 3 x 3, a stride above 1, or a padding other than
    /// zeros (the backend pads reflection and replication explicitly around wgrad). K is
    /// split as the tiled convs' cost model splits one GEMM of the 16 products stacked, in
    /// the dense GEMM's tile for the rows (`TiledLaunch::with_shape`: waves of resident
    /// blocks, and the partial sums' traffic).
    pub fn plan(g: &ConvGeometry, multiprocessors: usize) -> Option<WinogradWgrad> {
        let applies = g.spatial_rank == 2
            && g.kernel == [1, 3, 3]
            && g.stride == [1; 3]
            && g.pad_mode == PadMode::Zero
            && g.output[1] > 0
            && g.output[2] > 0;
        if !applies {
            return None;
        }
        let (tiles_h, tiles_w) = (g.output[1].div_ceil(2), g.output[2].div_ceil(2));
        let tiles = g.batch * tiles_h * tiles_w;
        let tile = dense_gemm_tile(g.c_out);
        let shape = if tile == 64 {
            TileShape::Square
        } else {
            TileShape::Large
        };
        let stacked = GemmSize {
            rows: POSITIONS * g.c_out.div_ceil(tile) * tile,
            columns: g.c_in,
            depth: tiles,
        };
        let launch = TiledLaunch::with_shape(stacked, shape, multiprocessors);
        Some(WinogradWgrad {
            tiles_h,
            tiles_w,
            tiles,
            rows: g.c_out,
            columns: g.c_in,
            splits: launch.splits,
            k_chunk: launch.k_chunk as usize,
        })
    }

    /// Floats of U (dY transformed) and of V (x transformed).
    pub fn u_len(&self) -> usize {
        POSITIONS * self.rows * self.tiles
    }
    pub fn v_len(&self) -> usize {
        POSITIONS * self.tiles * self.columns
    }

    /// Floats of the GEMMs' partial sums: a product per split and position.
    pub fn partial_len(&self) -> usize {
        self.splits * POSITIONS * self.rows * self.columns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shape;
    use crate::device::tiled_conv::TILE_K;
    use crate::ops::conv::ConvOptions;

    /// A conv of `input` (N, C, spatial) to as many channels, zero-padded to keep the size
    /// at stride 1.
    fn geometry(input: &[usize], kernel: usize, stride: usize) -> ConvGeometry {
        let mut w = vec![input[1], input[1]];
        w.extend(std::iter::repeat_n(kernel, input.len() - 2));
        let opts = ConvOptions::new(stride, kernel / 2);
        ConvGeometry::conv("test", &Shape::new(input), &Shape::new(&w), opts).unwrap()
    }

    #[test]
    fn applies_to_2d_three_by_three_stride_one_only() {
        assert!(WinogradWgrad::plan(&geometry(&[2, 4, 9, 7], 3, 1), 132).is_some());
        assert!(WinogradWgrad::plan(&geometry(&[2, 4, 9, 7], 3, 2), 132).is_none());
        assert!(WinogradWgrad::plan(&geometry(&[2, 4, 9, 7], 5, 1), 132).is_none());
        assert!(WinogradWgrad::plan(&geometry(&[2, 4, 5, 9, 7], 3, 1), 132).is_none());
    }

    /// The residual block at batch 1 on 132 multiprocessors: 64 GEMM blocks of 128 x 128, so
    /// 4 splits of 256 tiles fill 256 of the 264 slots in one wave (5 would take two); every
    /// tile in one split.
    #[test]
    fn splits_cover_the_tiles_once() {
        let p = WinogradWgrad::plan(&geometry(&[1, 256, 64, 64], 3, 1), 132).unwrap();
        assert_eq!((p.tiles_h, p.tiles_w, p.tiles), (32, 32, 1024));
        assert_eq!((p.splits, p.k_chunk), (4, 256));
        for (input, mps) in [
            (&[2, 4, 9, 7][..], 132),
            (&[16, 256, 64, 64], 132),
            (&[3, 8, 5, 5], 1),
        ] {
            let p = WinogradWgrad::plan(&geometry(input, 3, 1), mps).unwrap();
            assert_eq!(p.k_chunk % TILE_K, 0);
            assert!(p.splits * p.k_chunk >= p.tiles, "{input:?}: every tile");
            assert!(
                (p.splits - 1) * p.k_chunk < p.tiles,
                "{input:?}: no empty split"
            );
        }
        // Odd outputs round up to whole tiles.
        let p = WinogradWgrad::plan(&geometry(&[2, 4, 9, 7], 3, 1), 132).unwrap();
        assert_eq!((p.tiles_h, p.tiles_w, p.tiles), (5, 4, 40));
    }
}

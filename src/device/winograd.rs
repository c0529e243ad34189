//! Winograd's F(2 x 2, 3 x 3) for 2D 3 x 3 convs at stride 1 (the ResNet generators' 18
//! residual-block convs): 16 multiplications per 2 x 2 tile of outputs where the implicit
//! GEMM spends 36 (the formulas are in `kernels/conv.cu`). On an H200, cuDNN's strict-fp32
//! wgrad of the residual block ran at an effective 108.6 TFLOP/s at batch 16, above the FFMA
//! peak of 67, so no GEMM matches it: the tiled wgrad took 2.7 times as long (BENCHMARKS.md).
//! Each primitive transforms its operands per tile, runs 16 GEMMs (one per transformed
//! position) through the batched dense GEMM, and transforms the products back:
//! - fprop: the weights into `W[16][c_out][c_in]`, x into `V[16][c_in][tiles]`, the
//!   products `M[16][c_out][tiles]`, then y. dgrad is the fprop of its dual conv: dY as the input, the
//!   weights turned (channels swapped, taps flipped), padding 2 - p.
//! - wgrad: dY into `U[16][c_out][tiles]`, x into `V[16][tiles][c_in]`, the products over
//!   the tiles with K split, then the splits summed and transformed into dw.
//!
//! Plain arithmetic with no CUDA in it, so the host emulation runs the same launches.

use crate::device::tiled_conv::{ConvPass, GemmSize, TileShape, TiledLaunch, dense_gemm_tile};
use crate::ops::conv::ConvGeometry;
use crate::ops::pad::PadMode;

/// Transformed positions per tile (4 x 4), and so GEMMs per launch.
pub const POSITIONS: usize = 16;
/// Tiles and channels per block of wgrad's x transform (`winograd_wgrad_x_f32`'s grid).
pub const X_BLOCK_TILES: usize = 32;
pub const X_BLOCK_CHANNELS: usize = 8;

/// A Winograd conv primitive's launches on one geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Winograd {
    pub pass: ConvPass,
    /// The conv whose output the tiles cover: the primitive's own, or for dgrad its dual
    /// (whose fprop is the dgrad).
    pub conv: ConvGeometry,
    /// 2 x 2 output tiles of `conv` per image plane, down and across.
    pub tiles_h: usize,
    pub tiles_w: usize,
    /// The depth each of the GEMMs' K splits takes: wgrad's run over the tiles and split
    /// (a multiple of the GEMM's K tile); fprop's and dgrad's run over the input channels,
    /// whole.
    pub k_chunk: usize,
}

impl Winograd {
    /// The launches of `pass` on `g` on a GPU of `multiprocessors`, or None where the
    /// transform does not apply: 3D, a kernel other than 3 x 3, a stride above 1, a padding
    /// above 2 or other than zeros (the backend pads reflection and replication explicitly
    /// around the Winograd kernels). wgrad's K is split as the tiled convs' cost model splits
    /// one GEMM of the 16 products stacked, in the dense GEMM's tile for the rows
    /// (`TiledLaunch::with_shape`: waves of resident blocks, and the partial sums' traffic).
    pub fn plan(pass: ConvPass, g: &ConvGeometry, multiprocessors: usize) -> Option<Winograd> {
        let applies = g.spatial_rank == 2
            && g.kernel == [1, 3, 3]
            && g.stride == [1; 3]
            && g.pad_mode == PadMode::Zero
            && g.pad[1] <= 2
            && g.pad[2] <= 2
            && g.output[1] > 0
            && g.output[2] > 0;
        if !applies {
            return None;
        }
        let conv = match pass {
            ConvPass::Dgrad => ConvGeometry {
                c_in: g.c_out,
                c_out: g.c_in,
                input: g.output,
                output: g.input,
                pad: [0, 2 - g.pad[1], 2 - g.pad[2]],
                ..*g
            },
            _ => *g,
        };
        let (tiles_h, tiles_w) = (conv.output[1].div_ceil(2), conv.output[2].div_ceil(2));
        let tiles = conv.batch * tiles_h * tiles_w;
        let k_chunk = if pass == ConvPass::Wgrad {
            let tile = dense_gemm_tile(conv.c_out);
            let shape = if tile == 64 {
                TileShape::Square
            } else {
                TileShape::Large
            };
            let stacked = GemmSize {
                rows: POSITIONS * conv.c_out.div_ceil(tile) * tile,
                columns: conv.c_in,
                depth: tiles,
            };
            TiledLaunch::with_shape(stacked, shape, multiprocessors).k_chunk as usize
        } else {
            conv.c_in
        };
        Some(Winograd {
            pass,
            conv,
            tiles_h,
            tiles_w,
            k_chunk,
        })
    }

    /// The tiles over the batch.
    pub fn tiles(&self) -> usize {
        self.conv.batch * self.tiles_h * self.tiles_w
    }

    /// The GEMMs' K splits (wgrad's over the tiles; 1 for fprop and dgrad).
    pub fn splits(&self) -> usize {
        let depth = match self.pass {
            ConvPass::Wgrad => self.tiles(),
            _ => self.conv.c_in,
        };
        depth.div_ceil(self.k_chunk)
    }

    /// Floats of the input side transformed (V: x, or dgrad's dY): a value per position,
    /// tile and input channel of `conv`.
    pub fn v_len(&self) -> usize {
        POSITIONS * self.tiles() * self.conv.c_in
    }

    /// Floats of the output side transformed (wgrad's U from dY; fprop's and dgrad's
    /// products): a value per position, tile and output channel of `conv`.
    pub fn u_len(&self) -> usize {
        POSITIONS * self.conv.c_out * self.tiles()
    }

    /// Floats of a value per position and channel pair, per K split: fprop's and dgrad's
    /// transformed weights, wgrad's partial products.
    pub fn pairs_len(&self) -> usize {
        self.splits() * POSITIONS * self.conv.c_out * self.conv.c_in
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
        let plan = |input: &[usize], kernel, stride| {
            Winograd::plan(ConvPass::Wgrad, &geometry(input, kernel, stride), 132)
        };
        assert!(plan(&[2, 4, 9, 7], 3, 1).is_some());
        assert!(plan(&[2, 4, 9, 7], 3, 2).is_none());
        assert!(plan(&[2, 4, 9, 7], 5, 1).is_none());
        assert!(plan(&[2, 4, 5, 9, 7], 3, 1).is_none());
    }

    /// dgrad tiles the dual conv: dY (here 7 x 5 from a 9 x 7 input without padding) in,
    /// channels swapped, padded by 2, out to the input's size.
    #[test]
    fn dgrad_tiles_its_dual_conv() {
        let weight = Shape::new(&[6, 4, 3, 3]);
        let opts = ConvOptions::new(1, 0);
        let g = ConvGeometry::conv("test", &Shape::new(&[2, 4, 9, 7]), &weight, opts).unwrap();
        let p = Winograd::plan(ConvPass::Dgrad, &g, 132).unwrap();
        assert_eq!((p.conv.c_in, p.conv.c_out), (6, 4));
        assert_eq!((p.conv.input, p.conv.output), ([1, 7, 5], [1, 9, 7]));
        assert_eq!(p.conv.pad, [0, 2, 2]);
        assert_eq!((p.tiles_h, p.tiles_w, p.tiles()), (5, 4, 40));
        assert_eq!((p.splits(), p.k_chunk), (1, 6));
    }

    /// The residual block at batch 1 on 132 multiprocessors: 64 GEMM blocks of 128 x 128, so
    /// 4 splits of 256 tiles fill 256 of the 264 slots in one wave (5 would take two); every
    /// tile in one split.
    #[test]
    fn splits_cover_the_tiles_once() {
        let wgrad = |input: &[usize], mps| {
            Winograd::plan(ConvPass::Wgrad, &geometry(input, 3, 1), mps).unwrap()
        };
        let p = wgrad(&[1, 256, 64, 64], 132);
        assert_eq!((p.tiles_h, p.tiles_w, p.tiles()), (32, 32, 1024));
        assert_eq!((p.splits(), p.k_chunk), (4, 256));
        for (input, mps) in [
            (&[2, 4, 9, 7][..], 132),
            (&[16, 256, 64, 64], 132),
            (&[3, 8, 5, 5], 1),
        ] {
            let p = wgrad(input, mps);
            assert_eq!(p.k_chunk % TILE_K, 0);
            assert!(p.splits() * p.k_chunk >= p.tiles(), "{input:?}: every tile");
            assert!(
                (p.splits() - 1) * p.k_chunk < p.tiles(),
                "{input:?}: no empty split"
            );
        }
        // Odd outputs round up to whole tiles.
        let p = wgrad(&[2, 4, 9, 7], 132);
        assert_eq!((p.tiles_h, p.tiles_w, p.tiles()), (5, 4, 40));
    }
}

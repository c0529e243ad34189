//! How the CUDA backend launches `kernels/conv.cu`'s tiled implicit GEMMs: the GEMM each conv
//! primitive is, the tile shape (square, or narrow for GEMMs of at most four rows: the
//! one-channel image layers), the grid of tiles, and how far K is split so that
//! small-output, long-K layers (the U-Net's innermost convs, weight gradients) still fill
//! the GPU.
//! Plain arithmetic with no CUDA in it, so the host emulation of the kernels
//! (`tests/kernel_emulation.rs`) launches them exactly as the GPU does.

use crate::ops::conv::ConvGeometry;

/// The K step of `kernels/conv.cu`'s tiles (TILE_K).
pub const TILE_K: usize = 16;

/// The tile shapes `kernels/conv.cu` instantiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileShape {
    /// 64 x 64 (`conv_*_tiled_f32`).
    Square,
    /// 128 x 128 (`conv_*_large_f32`): twice the arithmetic per shared-memory read, picked
    /// for GEMMs with enough such tiles to fill the GPU without splitting K.
    Large,
    /// 4 x 256 (`conv_*_narrow_f32`): GEMMs of at most four rows.
    Narrow,
}

impl TileShape {
    pub const ALL: [TileShape; 3] = [TileShape::Square, TileShape::Large, TileShape::Narrow];

    /// The shape for a GEMM, given the blocks that fill the GPU.
    pub fn for_gemm(gemm: GemmSize, target_blocks: usize) -> TileShape {
        if gemm.rows <= 4 {
            TileShape::Narrow
        } else if TileShape::Large.tiles(gemm) >= target_blocks {
            TileShape::Large
        } else {
            TileShape::Square
        }
    }
    /// (rows, columns) of one tile.
    pub fn size(self) -> (usize, usize) {
        match self {
            TileShape::Square => (64, 64),
            TileShape::Large => (128, 128),
            TileShape::Narrow => (4, 256),
        }
    }
    /// Tiles covering the GEMM's result.
    fn tiles(self, gemm: GemmSize) -> usize {
        let (rows, columns) = self.size();
        gemm.rows.div_ceil(rows) * gemm.columns.div_ceil(columns)
    }
}

/// A split keeps at least this many K tiles (128 multiply-adds per result): shorter ones
/// spend more on writing and re-reading partial sums than they save.
const MIN_K_TILES_PER_SPLIT: usize = 8;
/// At most this many splits; the partial sums take `splits` times the result's memory.
const MAX_SPLITS: usize = 256;

/// The three conv primitives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPass {
    /// y = conv(x, w).
    Fprop,
    /// dx from dy and w (also a transposed conv's forward).
    Dgrad,
    /// dw from x and dy.
    Wgrad,
}

/// C[rows, columns] = A[rows, depth] * B[depth, columns].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmSize {
    pub rows: usize,
    pub columns: usize,
    pub depth: usize,
}

impl ConvPass {
    /// The implicit GEMM of this pass over `g` (kernels/conv.cu's operand structs).
    pub fn gemm(self, g: &ConvGeometry) -> GemmSize {
        let kernel_volume: usize = g.kernel.iter().product();
        let input_positions = g.batch * g.input.iter().product::<usize>();
        let output_positions = g.batch * g.output_volume();
        match self {
            ConvPass::Fprop => GemmSize {
                rows: g.c_out,
                columns: output_positions,
                depth: g.c_in * kernel_volume,
            },
            ConvPass::Dgrad => GemmSize {
                rows: g.c_in,
                columns: input_positions,
                depth: g.c_out * kernel_volume,
            },
            ConvPass::Wgrad => GemmSize {
                rows: g.c_out,
                columns: g.c_in * kernel_volume,
                depth: output_positions,
            },
        }
    }
}

/// One tiled launch: grid (x: column tiles, y: row tiles, z: K splits) of 256 threads, each
/// split summing `k_chunk` of K; with several splits, `workspace` floats of partial sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TiledLaunch {
    pub shape: TileShape,
    pub grid: (u32, u32, u32),
    pub k_chunk: u32,
    pub splits: usize,
    pub workspace: usize,
}

impl TiledLaunch {
    /// The backend's launch: the tile shape `TileShape::for_gemm` picks, K split as
    /// `with_shape` does.
    pub fn plan(gemm: GemmSize, target_blocks: usize) -> TiledLaunch {
        TiledLaunch::with_shape(
            gemm,
            TileShape::for_gemm(gemm, target_blocks),
            target_blocks,
        )
    }

    /// A launch in tiles of `shape` (`mrgan bench kernels` times every shape): K split until
    /// about `target_blocks` blocks run (the backend asks for two per multiprocessor), never
    /// below `MIN_K_TILES_PER_SPLIT` K tiles a split.
    pub fn with_shape(gemm: GemmSize, shape: TileShape, target_blocks: usize) -> TiledLaunch {
        let (tile_rows, tile_columns) = shape.size();
        let tiles = shape.tiles(gemm);
        let k_tiles = gemm.depth.div_ceil(TILE_K).max(1);
        let wanted = target_blocks.div_ceil(tiles.max(1));
        let splits = wanted
            .min(k_tiles / MIN_K_TILES_PER_SPLIT)
            .clamp(1, MAX_SPLITS);
        // Equal chunks of whole K tiles; recount so that no split is empty.
        let chunk_tiles = k_tiles.div_ceil(splits);
        let splits = k_tiles.div_ceil(chunk_tiles);
        TiledLaunch {
            shape,
            grid: (
                gemm.columns.div_ceil(tile_columns) as u32,
                gemm.rows.div_ceil(tile_rows) as u32,
                splits as u32,
            ),
            k_chunk: (chunk_tiles * TILE_K) as u32,
            splits,
            workspace: if splits > 1 {
                splits * gemm.rows * gemm.columns
            } else {
                0
            },
        }
    }

    /// The launches autotuning times for a GEMM (`CudaBackend::set_autotune`): the plan's
    /// own first, then each tile shape that suits the GEMM (narrow and square for at most
    /// four rows, else square and large) with K unsplit and split for a half, one and two
    /// times `target_blocks`; no launch twice.
    pub fn candidates(gemm: GemmSize, target_blocks: usize) -> Vec<TiledLaunch> {
        let shapes = if gemm.rows <= 4 {
            [TileShape::Narrow, TileShape::Square]
        } else {
            [TileShape::Square, TileShape::Large]
        };
        let targets = [
            1,
            target_blocks.div_ceil(2),
            target_blocks,
            2 * target_blocks,
        ];
        let mut all = vec![TiledLaunch::plan(gemm, target_blocks)];
        for shape in shapes {
            for target in targets {
                let launch = TiledLaunch::with_shape(gemm, shape, target);
                if !all.contains(&launch) {
                    all.push(launch);
                }
            }
        }
        all
    }

    /// Short description for tables: tile shape and K splits, e.g. "128x128/5".
    pub fn label(&self) -> String {
        let (rows, columns) = self.shape.size();
        format!("{rows}x{columns}/{}", self.splits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemm(rows: usize, columns: usize, depth: usize) -> GemmSize {
        GemmSize {
            rows,
            columns,
            depth,
        }
    }

    #[test]
    fn large_outputs_are_not_split() {
        // resnet block at batch 16: 256 x 65536 outputs = 1024 large tiles.
        let plan = TiledLaunch::plan(gemm(256, 65536, 2304), 264);
        assert_eq!(plan.shape, TileShape::Large);
        assert_eq!(plan.grid, (512, 2, 1));
        assert_eq!((plan.splits, plan.workspace), (1, 0));
    }

    #[test]
    fn long_k_small_outputs_split_into_whole_tiles_covering_k() {
        // unet down1 wgrad at batch 16: one 64 x 16 tile, K = 262144.
        let plan = TiledLaunch::plan(gemm(64, 16, 262_144), 264);
        assert_eq!(plan.splits, 256);
        assert_eq!(plan.k_chunk as usize % TILE_K, 0);
        assert!(plan.k_chunk as usize * plan.splits >= 262_144);
        assert!(plan.k_chunk as usize * (plan.splits - 1) < 262_144);
        assert_eq!(plan.workspace, 256 * 64 * 16);
        // unet down6 fprop at batch 1: 8 tiles, K = 8192 (512 K tiles): 33 splits wanted,
        // 32 chunks of 16 K tiles.
        let plan = TiledLaunch::plan(gemm(512, 16, 8192), 264);
        assert_eq!(plan.shape, TileShape::Square);
        assert_eq!(plan.grid, (1, 8, 32));
        assert_eq!(plan.k_chunk, 256);
        assert!(plan.k_chunk as usize / TILE_K >= MIN_K_TILES_PER_SPLIT);
    }

    #[test]
    fn any_shape_can_be_planned_and_labelled() {
        let g = gemm(256, 4096, 2304);
        let plan = TiledLaunch::with_shape(g, TileShape::Large, 264);
        assert_eq!(plan.grid, (32, 2, 5));
        assert_eq!(plan.label(), "128x128/5");
        assert_eq!(TiledLaunch::plan(g, 264).label(), "64x64/2");
    }

    #[test]
    fn tuning_candidates_start_with_the_plan_and_are_distinct() {
        let g = gemm(256, 4096, 2304);
        let all = TiledLaunch::candidates(g, 264);
        assert_eq!(all[0], TiledLaunch::plan(g, 264));
        let labels: Vec<String> = all.iter().map(TiledLaunch::label).collect();
        // Square: unsplit, 2 (the plan, also for half the target), 3; large: 1, 3, 5, 9.
        assert_eq!(
            labels,
            [
                "64x64/2",
                "64x64/1",
                "64x64/3",
                "128x128/1",
                "128x128/3",
                "128x128/5",
                "128x128/9"
            ]
        );
        let one_row = TiledLaunch::candidates(gemm(1, 65536, 3136), 264);
        assert!(one_row.iter().all(|l| l.shape != TileShape::Large));
        assert!(one_row.iter().any(|l| l.shape == TileShape::Square));
    }

    #[test]
    fn short_k_is_never_split() {
        let plan = TiledLaunch::plan(gemm(64, 65536, 16), 264);
        assert_eq!(plan.splits, 1);
        assert_eq!(plan.k_chunk, 16);
    }

    #[test]
    fn one_channel_sides_get_narrow_tiles() {
        // resnet head fprop at batch 1: 64 -> 1 channel, 7 x 7, 256 x 256 outputs.
        let plan = TiledLaunch::plan(gemm(1, 65536, 3136), 264);
        assert_eq!(plan.shape, TileShape::Narrow);
        assert_eq!((plan.grid.0, plan.grid.1), (256, 1));
        assert_ne!(
            TiledLaunch::plan(gemm(5, 65536, 16), 264).shape,
            TileShape::Narrow
        );
    }
}

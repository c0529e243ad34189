//! How the CUDA backend launches `kernels/conv.cu`'s tiled implicit GEMMs: the GEMM each conv
//! primitive is, the tile shape (square or large, or narrow for GEMMs of at most four rows:
//! the one-channel image layers), the grid of tiles, and how far K is split so that
//! small-output, long-K layers (the U-Net's innermost convs, weight gradients) still fill
//! the GPU. Shape and split are picked by a cost model of waves of resident blocks
//! (`TiledLaunch::modelled_cost`); stream K (`TiledLaunch::stream_k`), equal shares of all
//! tiles' K work, is tried by autotuning.
//! Plain arithmetic with no CUDA in it, so the host emulation of the kernels
//! (`tests/kernel_emulation.rs`) launches them exactly as the GPU does.

use crate::ops::conv::ConvGeometry;
use crate::ops::pad::PadMode;

/// The K step of `kernels/conv.cu`'s tiles (TILE_K).
pub const TILE_K: usize = 16;

/// The tile shapes `kernels/conv.cu` instantiates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TileShape {
    /// 64 x 64 (`conv_*_tiled_f32`).
    Square,
    /// 128 x 128 (`conv_*_large_f32`): twice the arithmetic per shared-memory read.
    Large,
    /// 4 x 256 (`conv_*_narrow_f32`): GEMMs of at most four rows (one-channel images in and
    /// out), which would leave most of a square tile idle.
    Narrow,
}

impl TileShape {
    pub const ALL: [TileShape; 3] = [TileShape::Square, TileShape::Large, TileShape::Narrow];

    /// The shapes that suit a GEMM: narrow (and square) for at most four rows, else square
    /// and large.
    pub fn suited(gemm: GemmSize) -> [TileShape; 2] {
        if gemm.rows <= 4 {
            [TileShape::Narrow, TileShape::Square]
        } else {
            [TileShape::Square, TileShape::Large]
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
    /// "rows x columns", e.g. "128x128".
    pub fn label(self) -> String {
        let (rows, columns) = self.size();
        format!("{rows}x{columns}")
    }
    /// Tiles covering the GEMM's result.
    fn tiles(self, gemm: GemmSize) -> usize {
        let (rows, columns) = self.size();
        gemm.rows.div_ceil(rows) * gemm.columns.div_ceil(columns)
    }
    /// Blocks a multiprocessor runs at once: the launch bounds of `kernels/conv.cu` (64
    /// registers a thread for square and narrow tiles, 128 for large ones).
    fn resident_blocks(self) -> usize {
        match self {
            TileShape::Large => 2,
            TileShape::Square | TileShape::Narrow => 4,
        }
    }
    /// Time for a multiprocessor's resident blocks to multiply one K tile each, relative to
    /// square tiles'. Large ones do twice the work at 1.34x the rate (fitted with
    /// `PARTIAL_BYTES_PER_UNIT`: 1.49 units). Narrow tiles are counted at the square ones'
    /// cost: they only compete on GEMMs of at most four rows, where a narrow block covers
    /// 256 columns of useful results to a square block's 64, in no more time (a quarter of
    /// the multiply-adds), so they win on their fewer tiles.
    fn wave_cost(self) -> f64 {
        match self {
            TileShape::Large => 2.0 / 1.34,
            TileShape::Square | TileShape::Narrow => 1.0,
        }
    }
}

/// The side of the dense GEMM's square tiles (`gemm_f32`, `gemm_square_f32`): 64 for at
/// most 64 rows, which would leave most of a 128-row tile idle, else 128.
pub fn dense_gemm_tile(rows: usize) -> usize {
    if rows <= 64 { 64 } else { 128 }
}

/// A split keeps at least this many K tiles (128 multiply-adds per result): shorter ones
/// spend more on writing and re-reading partial sums than they save.
const MIN_K_TILES_PER_SPLIT: usize = 8;
/// At most this many splits; the partial sums take `splits` times the result's memory.
const MAX_SPLITS: usize = 256;
/// Autotuning tries stream K only with at most this many floats of partial sums (256 MiB):
/// on large outputs its slots take twice the result (1 GiB for the 3D CycleGAN's largest
/// layers at batch 2), a lot to allocate for one candidate.
const MAX_STREAM_K_WORKSPACE: usize = 1 << 26;
/// Bytes of partial sums a multiprocessor writes, reads back and sums in the time its blocks
/// multiply one K tile of square tiles (the cost model's unit). Fitted by least squares to
/// the residual block's fprop and wgrad on an H200 (132 multiprocessors; batch 1 in 1 to 16
/// splits of both shapes, and batch 16): 2.15 us a unit, 0.52 us a MB.
const PARTIAL_BYTES_PER_UNIT: f64 = 31e3;

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
    /// "fprop", "dgrad" or "wgrad", as tables print it.
    pub fn name(self) -> &'static str {
        match self {
            ConvPass::Fprop => "fprop",
            ConvPass::Dgrad => "dgrad",
            ConvPass::Wgrad => "wgrad",
        }
    }

    /// The implicit GEMM of this pass over `g` (kernels/conv.cu's operand structs).
    /// A dgrad whose padding the kernels cannot fold (`dgrad_folds_padding`) computes the
    /// padded input's gradient.
    pub fn gemm(self, g: &ConvGeometry) -> GemmSize {
        let kernel_volume: usize = g.kernel.iter().product();
        let input = match g.explicit_padding() {
            Some((_, padded)) if self == ConvPass::Dgrad && !dgrad_folds_padding(g) => padded.input,
            _ => g.input,
        };
        let input_positions = g.batch * input.iter().product::<usize>();
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

/// Whether dgrad's kernels take `g`'s reflection or replication padding folded into dY
/// (`kernels/conv.cu`, "Padding"): at stride 1 with kernels of 2p + 1 taps and inputs longer
/// than 2p + 1 on every padded axis, as in the ResNet generators. The backend pads other
/// padded dgrads explicitly.
pub fn dgrad_folds_padding(g: &ConvGeometry) -> bool {
    g.pad_mode != PadMode::Zero
        && g.stride == [1; 3]
        && (0..3).all(|a| {
            let p = g.pad[a];
            p == 0 || (g.kernel[a] == 2 * p + 1 && g.input[a] > 2 * p + 1)
        })
}

/// Floats of dY folded for dgrad (`conv_fold_dy_f32`): per padded axis, the output's extent
/// plus 2 p^2 (reflection) or 2 p (replication) sums.
pub fn folded_dy_len(g: &ConvGeometry) -> usize {
    let extra = |p: usize| match g.pad_mode {
        _ if p == 0 => 0,
        PadMode::Reflect => 2 * p * p,
        PadMode::Replicate => 2 * p,
        PadMode::Zero => 0,
    };
    let extents: usize = (0..3).map(|a| g.output[a] + extra(g.pad[a])).product();
    g.batch * g.c_out * extents
}

/// One tiled launch: grid (x: column tiles, y: row tiles, z: K splits) of 256 threads, each
/// split summing `k_chunk` of K; with several splits, `workspace` floats of partial sums.
/// A stream-K launch (`stream_k`) is a grid of (blocks, 1, 1) sharing all tiles' K work
/// equally, into `splits` slots of partial sums (`k_chunk` holds the slots too: it is the
/// kernels' last argument).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TiledLaunch {
    pub shape: TileShape,
    pub grid: (u32, u32, u32),
    pub k_chunk: u32,
    pub splits: usize,
    pub workspace: usize,
    pub stream_k: bool,
}

impl TiledLaunch {
    /// The backend's launch on a GPU of `multiprocessors`: of the shapes that suit the GEMM
    /// and their K splits, the one of least `modelled_cost` (the fewest splits on a tie).
    pub fn plan(gemm: GemmSize, multiprocessors: usize) -> TiledLaunch {
        let [first, second] = TileShape::suited(gemm);
        let a = TiledLaunch::with_shape(gemm, first, multiprocessors);
        let b = TiledLaunch::with_shape(gemm, second, multiprocessors);
        if b.modelled_cost(gemm, multiprocessors) < a.modelled_cost(gemm, multiprocessors) {
            b
        } else {
            a
        }
    }

    /// The launch in tiles of `shape` whose K split has the least `modelled_cost`.
    pub fn with_shape(gemm: GemmSize, shape: TileShape, multiprocessors: usize) -> TiledLaunch {
        let mut best = TiledLaunch::with_splits(gemm, shape, 1);
        let mut best_cost = best.modelled_cost(gemm, multiprocessors);
        for splits in 2..=TiledLaunch::max_splits(gemm) {
            let launch = TiledLaunch::with_splits(gemm, shape, splits);
            let cost = launch.modelled_cost(gemm, multiprocessors);
            if launch.splits == splits && cost < best_cost {
                (best, best_cost) = (launch, cost);
            }
        }
        best
    }

    /// The most splits a GEMM takes: each keeps `MIN_K_TILES_PER_SPLIT` K tiles.
    pub fn max_splits(gemm: GemmSize) -> usize {
        (gemm.depth.div_ceil(TILE_K) / MIN_K_TILES_PER_SPLIT).clamp(1, MAX_SPLITS)
    }

    /// A launch in tiles of `shape` with K in about `splits` equal chunks of whole K tiles
    /// (fewer where the chunks' rounding leaves the last ones empty).
    pub fn with_splits(gemm: GemmSize, shape: TileShape, splits: usize) -> TiledLaunch {
        let (tile_rows, tile_columns) = shape.size();
        let k_tiles = gemm.depth.div_ceil(TILE_K).max(1);
        let chunk_tiles = k_tiles.div_ceil(splits.clamp(1, k_tiles));
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
            stream_k: false,
        }
    }

    /// Stream K in large tiles (`kernels/conv.cu`'s `stream_k_gemm`): one block per resident
    /// slot of the GPU, each taking an equal share of all tiles' K tiles, a share that may
    /// end one tile and start the next. So the blocks are one full wave whatever the tile
    /// count, where split K's equal splits leave the last wave part empty (the residual
    /// block's dgrad at batch 1: 70 large tiles, 210 of 264 slots busy in 3 splits). Each
    /// tile's pieces go to as many slots of partial sums as it has contributors, at most
    /// `splits`, summed as after split K.
    pub fn stream_k(gemm: GemmSize, multiprocessors: usize) -> TiledLaunch {
        let shape = TileShape::Large;
        let tiles = shape.tiles(gemm);
        let k_tiles = gemm.depth.div_ceil(TILE_K).max(1);
        let work = tiles * k_tiles;
        // No more blocks than units, so that every share is a piece: a tile's contributors
        // are then consecutive blocks, each writing its slot.
        let blocks = (multiprocessors.max(1) * shape.resident_blocks()).min(work);
        // The block whose share holds unit w (units tile-major), as the kernel works it out.
        let block_of = |w: usize| ((w + 1) * blocks - 1) / work;
        let slots = (0..tiles)
            .map(|t| block_of((t + 1) * k_tiles - 1) - block_of(t * k_tiles) + 1)
            .max()
            .unwrap_or(1);
        TiledLaunch {
            shape,
            grid: (blocks as u32, 1, 1),
            k_chunk: slots as u32,
            splits: slots,
            workspace: if slots > 1 {
                slots * gemm.rows * gemm.columns
            } else {
                0
            },
            stream_k: true,
        }
    }

    /// The launch's time in a simple model, in units of one K tile of square tiles on every
    /// multiprocessor: blocks run in waves of `resident_blocks` a multiprocessor, each wave
    /// as long as its blocks' K tiles (a last, partial wave costs a whole one), plus, with
    /// split K, the partial sums written, read and summed at the memory's speed. Fitted to
    /// an H200's rates: see BENCHMARKS.md for how far it predicts them.
    pub fn modelled_cost(&self, gemm: GemmSize, multiprocessors: usize) -> f64 {
        let slots = multiprocessors.max(1) * self.shape.resident_blocks();
        let k_tiles = gemm.depth.div_ceil(TILE_K).max(1);
        // Waves times each block's K tiles; stream K: one wave of equal shares.
        let (waves, block_k_tiles) = if self.stream_k {
            let blocks = self.grid.0 as usize;
            (
                blocks.div_ceil(slots),
                (self.shape.tiles(gemm) * k_tiles).div_ceil(blocks),
            )
        } else {
            let blocks = self.shape.tiles(gemm) * self.splits;
            (blocks.div_ceil(slots), self.k_chunk as usize / TILE_K)
        };
        let compute = (waves * block_k_tiles) as f64 * self.shape.wave_cost();
        let partial_bytes = if self.splits > 1 {
            ((2 * self.splits + 1) * gemm.rows * gemm.columns * 4) as f64
        } else {
            0.0
        };
        compute + partial_bytes / (multiprocessors.max(1) as f64 * PARTIAL_BYTES_PER_UNIT)
    }

    /// The launches autotuning times for a GEMM (`CudaBackend::set_autotune`): the plan's
    /// own first, then in each suited shape the best split by the model, K unsplit, and the
    /// splits that fill one, two and four waves of resident blocks, then (more than four
    /// rows, and partial sums within `MAX_STREAM_K_WORKSPACE`) stream K; no launch twice. The plan itself never picks stream K: it awaits a
    /// GPU's timing (BENCHMARKS.md).
    pub fn candidates(gemm: GemmSize, multiprocessors: usize) -> Vec<TiledLaunch> {
        let mut all = vec![TiledLaunch::plan(gemm, multiprocessors)];
        for shape in TileShape::suited(gemm) {
            let slots = multiprocessors.max(1) * shape.resident_blocks();
            let tiles = shape.tiles(gemm).max(1);
            let mut launches = vec![
                TiledLaunch::with_shape(gemm, shape, multiprocessors),
                TiledLaunch::with_splits(gemm, shape, 1),
            ];
            for waves in [1, 2, 4] {
                let splits = (waves * slots / tiles).min(TiledLaunch::max_splits(gemm));
                launches.push(TiledLaunch::with_splits(gemm, shape, splits));
            }
            for launch in launches {
                if !all.contains(&launch) {
                    all.push(launch);
                }
            }
        }
        if gemm.rows > 4 {
            let stream_k = TiledLaunch::stream_k(gemm, multiprocessors);
            if stream_k.workspace <= MAX_STREAM_K_WORKSPACE {
                all.push(stream_k);
            }
        }
        all
    }

    /// Short description for tables: tile shape and K splits, e.g. "128x128/5", or for
    /// stream K the blocks, e.g. "128x128/sk264".
    pub fn label(&self) -> String {
        let shape = self.shape.label();
        if self.stream_k {
            format!("{shape}/sk{}", self.grid.0)
        } else {
            format!("{shape}/{}", self.splits)
        }
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
        // resnet block at batch 16 on 132 multiprocessors: 256 x 65536 outputs = 1024 large
        // tiles, four waves of 264.
        let plan = TiledLaunch::plan(gemm(256, 65536, 2304), 132);
        assert_eq!(plan.shape, TileShape::Large);
        assert_eq!(plan.grid, (512, 2, 1));
        assert_eq!((plan.splits, plan.workspace), (1, 0));
    }

    #[test]
    fn long_k_small_outputs_split_into_whole_tiles_covering_k() {
        // unet down1 wgrad at batch 16: one 64 x 16 tile, K = 262144.
        let plan = TiledLaunch::plan(gemm(64, 16, 262_144), 132);
        assert_eq!(plan.splits, 256);
        assert_eq!(plan.k_chunk as usize % TILE_K, 0);
        assert!(plan.k_chunk as usize * plan.splits >= 262_144);
        assert!(plan.k_chunk as usize * (plan.splits - 1) < 262_144);
        assert_eq!(plan.workspace, 256 * 64 * 16);
        // unet down6 fprop at batch 1: 8 tiles, K = 8192 (512 K tiles): 64 chunks of the
        // shortest, 8 K tiles, still one wave (512 blocks of 528).
        let plan = TiledLaunch::plan(gemm(512, 16, 8192), 132);
        assert_eq!(plan.shape, TileShape::Square);
        assert_eq!(plan.grid, (1, 8, 64));
        assert_eq!(plan.k_chunk, 128);
        assert!(plan.k_chunk as usize / TILE_K >= MIN_K_TILES_PER_SPLIT);
    }

    #[test]
    fn any_shape_can_be_planned_and_labelled() {
        let g = gemm(256, 4096, 2304);
        let plan = TiledLaunch::with_shape(g, TileShape::Square, 132);
        assert_eq!(plan.grid, (64, 4, 2));
        assert_eq!(plan.label(), "64x64/2");
        assert_eq!(
            TiledLaunch::with_splits(g, TileShape::Large, 5).label(),
            "128x128/5"
        );
    }

    #[test]
    fn the_plan_fills_whole_waves() {
        // The residual block's fprop at batch 1 on 132 multiprocessors (H100, H200): 64
        // large tiles. 4 splits make 256 blocks, one wave of 2 x 132; 5 (the old rule's
        // "about two blocks per multiprocessor") make 320, a second wave for 56 of them.
        let g = gemm(256, 4096, 2304);
        let plan = TiledLaunch::plan(g, 132);
        assert_eq!(plan.label(), "128x128/4");
        let five = TiledLaunch::with_splits(g, TileShape::Large, 5);
        assert!(plan.modelled_cost(g, 132) < five.modelled_cost(g, 132));
        // Square tiles in two splits (512 blocks, one wave of 4 x 132) cost the same K
        // tiles per block as large ones in four, at the square tiles' lower rate.
        let square = TiledLaunch::with_splits(g, TileShape::Square, 2);
        assert!(plan.modelled_cost(g, 132) < square.modelled_cost(g, 132));
    }

    #[test]
    fn tuning_candidates_start_with_the_plan_and_are_distinct() {
        let g = gemm(256, 4096, 2304);
        let all = TiledLaunch::candidates(g, 132);
        assert_eq!(all[0], TiledLaunch::plan(g, 132));
        let labels: Vec<String> = all.iter().map(TiledLaunch::label).collect();
        // The plan (large, 4 splits); square: best by the model (2), unsplit, and the
        // splits filling one, two and four waves of 528 (256 tiles: 2 again, 4, 8); large:
        // unsplit, then one, two, four waves of 264 (64 tiles: 4 again, 8, 16); stream K.
        assert_eq!(
            labels,
            [
                "128x128/4",
                "64x64/2",
                "64x64/1",
                "64x64/4",
                "64x64/8",
                "128x128/1",
                "128x128/8",
                "128x128/16",
                "128x128/sk264"
            ]
        );
        let one_row = TiledLaunch::candidates(gemm(1, 65536, 3136), 132);
        assert!(one_row.iter().all(|l| l.shape != TileShape::Large));
        assert!(one_row.iter().any(|l| l.shape == TileShape::Square));
    }

    /// Per tile, the blocks whose share [b W / B, (b + 1) W / B) of the tile-major units
    /// meets it, worked out share by share.
    fn contributors(tiles: usize, k_tiles: usize, blocks: usize) -> Vec<Vec<usize>> {
        let work = tiles * k_tiles;
        let mut per_tile = vec![Vec::new(); tiles];
        for b in 0..blocks {
            let (begin, end) = (b * work / blocks, (b + 1) * work / blocks);
            assert!(
                begin < end,
                "block {b} of {blocks} has no work ({work} units)"
            );
            for (t, list) in per_tile.iter_mut().enumerate() {
                if begin < (t + 1) * k_tiles && t * k_tiles < end {
                    list.push(b);
                }
            }
        }
        per_tile
    }

    #[test]
    fn stream_k_shares_all_tiles_work_in_one_wave() {
        // The residual block's dgrad at batch 1 on 132 multiprocessors: 70 large tiles of 144
        // K tiles on 264 blocks, about 38 K tiles each; split K's best, 3 splits, leaves 54
        // slots empty and gives each block 48.
        let g = gemm(256, 4356, 2304);
        let launch = TiledLaunch::stream_k(g, 132);
        assert_eq!((launch.grid, launch.stream_k), ((264, 1, 1), true));
        assert_eq!(launch.label(), "128x128/sk264");
        let per_tile = contributors(70, 144, 264);
        // Each tile's contributors are consecutive blocks (their slot is b - first), and the
        // slots cover the most any tile has.
        for list in &per_tile {
            assert_eq!(list.last().unwrap() - list[0] + 1, list.len());
        }
        let most = per_tile.iter().map(Vec::len).max().unwrap();
        assert_eq!(launch.splits, most);
        assert_eq!(launch.k_chunk as usize, most);
        assert_eq!(launch.workspace, most * 256 * 4356);
        let three = TiledLaunch::with_splits(g, TileShape::Large, 3);
        assert!(launch.modelled_cost(g, 132) < three.modelled_cost(g, 132));
        // Too much partial-sum memory to try: the 3D generator's first layer at batch 2
        // (64 channels, 128 x 128 x 64) has 2 slots of 134 M floats.
        let big = gemm(64, 2 * 128 * 128 * 64, 7 * 7 * 7);
        assert!(TiledLaunch::stream_k(big, 132).workspace > MAX_STREAM_K_WORKSPACE);
        assert!(
            TiledLaunch::candidates(big, 132)
                .iter()
                .all(|l| !l.stream_k)
        );
        // Fewer units than slots: one block per unit, none idle.
        let small = TiledLaunch::stream_k(gemm(64, 100, 48), 132);
        assert_eq!(small.grid.0, 3);
        assert_eq!(small.splits, contributors(1, 3, 3)[0].len());
    }

    #[test]
    fn short_k_is_never_split() {
        let plan = TiledLaunch::plan(gemm(64, 65536, 16), 132);
        assert_eq!(plan.splits, 1);
        assert_eq!(plan.k_chunk, 16);
    }

    #[test]
    fn one_channel_sides_get_narrow_tiles() {
        // resnet head fprop at batch 1: 64 -> 1 channel, 7 x 7, 256 x 256 outputs.
        let plan = TiledLaunch::plan(gemm(1, 65536, 3136), 132);
        assert_eq!(plan.shape, TileShape::Narrow);
        assert_eq!((plan.grid.0, plan.grid.1), (256, 1));
        assert_ne!(
            TiledLaunch::plan(gemm(5, 65536, 16), 132).shape,
            TileShape::Narrow
        );
    }
}

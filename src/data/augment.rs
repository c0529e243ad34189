//! The reference's 2D augmentation: resize to `load_size`, random crop to `crop_size`, random
//! horizontal flip; paired images get the same crop and flip.
//!
//! Resizing is separable bicubic (a = -0.5) with PIL's support scaling when shrinking, on
//! float data: it follows PIL's `Image.resize(BICUBIC)` geometry, not its 8-bit rounding.

use rand::{Rng, RngExt};

use super::slices::Image;

/// Augmentation settings; `None` skips a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AugmentOptions {
    /// Resize to `load_size` x `load_size` first.
    pub load_size: Option<usize>,
    /// Then take a random `crop_size` x `crop_size` window.
    pub crop_size: Option<usize>,
    /// Then flip left-right with probability 1/2.
    pub flip: bool,
}

/// PIL's bicubic kernel with a = -0.5.
fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// For each output index: the first input index and the normalised weights (PIL's scheme).
fn resample_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..output)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let start = ((center - support + 0.5).floor().max(0.0)) as usize;
            let end = ((center + support + 0.5).floor() as usize).min(input);
            let mut w: Vec<f64> = (start..end)
                .map(|i| bicubic((i as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (start, w)
        })
        .collect()
}

/// Bicubic resize to `rows` x `cols`.
pub fn resize(img: &Image, rows: usize, cols: usize) -> Image {
    let horizontal = resample_weights(img.cols, cols);
    let vertical = resample_weights(img.rows, rows);
    let mut wide = vec![0.0f64; img.rows * cols];
    for r in 0..img.rows {
        let line = &img.data[r * img.cols..(r + 1) * img.cols];
        for (c, (start, w)) in horizontal.iter().enumerate() {
            wide[r * cols + c] = w
                .iter()
                .enumerate()
                .map(|(k, wk)| wk * line[start + k] as f64)
                .sum();
        }
    }
    let mut data = vec![0.0f32; rows * cols];
    for (r, (start, w)) in vertical.iter().enumerate() {
        for c in 0..cols {
            data[r * cols + c] = w
                .iter()
                .enumerate()
                .map(|(k, wk)| wk * wide[(start + k) * cols + c])
                .sum::<f64>() as f32;
        }
    }
    Image { rows, cols, data }
}

/// The `size` x `size` window at (`top`, `left`).
pub fn crop(img: &Image, top: usize, left: usize, size: usize) -> Image {
    let mut data = Vec::with_capacity(size * size);
    for r in top..top + size {
        data.extend_from_slice(&img.data[r * img.cols + left..r * img.cols + left + size]);
    }
    Image {
        rows: size,
        cols: size,
        data,
    }
}

/// Mirrors columns (PIL's FLIP_LEFT_RIGHT).
pub fn flip_horizontal(img: &Image) -> Image {
    let mut data = img.data.clone();
    data.chunks_mut(img.cols).for_each(|row| row.reverse());
    Image { data, ..*img }
}

/// Applies the same random resize / crop / flip to every image of one sample.
pub fn augment<R: Rng + ?Sized>(
    images: &[&Image],
    opts: &AugmentOptions,
    rng: &mut R,
) -> Vec<Image> {
    let mut out: Vec<Image> = images
        .iter()
        .map(|img| match opts.load_size {
            Some(s) => resize(img, s, s),
            None => (*img).clone(),
        })
        .collect();
    if let Some(size) = opts.crop_size {
        let (rows, cols) = (out[0].rows, out[0].cols);
        if size <= rows && size <= cols {
            let top = rng.random_range(0..=rows - size);
            let left = rng.random_range(0..=cols - size);
            out = out.iter().map(|img| crop(img, top, left, size)).collect();
        }
    }
    if opts.flip && rng.random::<f64>() > 0.5 {
        out = out.iter().map(flip_horizontal).collect();
    }
    out
}

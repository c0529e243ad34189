//! 2D slices of a volume, padding to a network's size, and exact reassembly.
//!
//! Convention (the reference's usual nibabel -> PIL preparation): the image of slice `k`
//! along `axis` has the lower remaining voxel axis as rows and the higher one as columns, so
//! along axis 2 it is NumPy's `vol[:, :, k]`.

use super::error::{DataError, DataResult};

/// A row-major 2D image.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }
}

/// The voxel axes that become rows and columns of a slice along `axis`.
fn plane_axes(axis: usize) -> (usize, usize) {
    match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    }
}

fn strides(dims: [usize; 3]) -> [usize; 3] {
    [1, dims[0], dims[0] * dims[1]]
}

/// Number of slices along `axis`.
pub fn count(dims: [usize; 3], axis: usize) -> usize {
    dims[axis]
}

/// Slice `k` along `axis` of a first-axis-fastest volume.
pub fn slice(data: &[f32], dims: [usize; 3], axis: usize, k: usize) -> Image {
    let (ra, ca) = plane_axes(axis);
    let s = strides(dims);
    let (rows, cols) = (dims[ra], dims[ca]);
    let base = k * s[axis];
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            out.push(data[base + r * s[ra] + c * s[ca]]);
        }
    }
    Image {
        rows,
        cols,
        data: out,
    }
}

/// Writes `img` into slice `k` along `axis`.
pub fn set_slice(data: &mut [f32], dims: [usize; 3], axis: usize, k: usize, img: &Image) {
    let (ra, ca) = plane_axes(axis);
    let s = strides(dims);
    assert_eq!(
        (img.rows, img.cols),
        (dims[ra], dims[ca]),
        "set_slice: image size"
    );
    let base = k * s[axis];
    for r in 0..img.rows {
        for c in 0..img.cols {
            data[base + r * s[ra] + c * s[ca]] = img.get(r, c);
        }
    }
}

/// Rebuilds a volume from all its slices along `axis`.
pub fn assemble(images: &[Image], dims: [usize; 3], axis: usize) -> DataResult<Vec<f32>> {
    if images.len() != dims[axis] {
        return Err(DataError::Mismatch(format!(
            "{} slices given for a volume with {} along axis {axis}",
            images.len(),
            dims[axis]
        )));
    }
    let mut data = vec![0.0; dims.iter().product()];
    for (k, img) in images.iter().enumerate() {
        set_slice(&mut data, dims, axis, k, img);
    }
    Ok(data)
}

/// Which size a slice is padded to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadTarget {
    /// Exactly this many rows and columns (e.g. 256 x 256 for unet_256).
    Exact(usize, usize),
    /// The next multiple of this (e.g. 4 for a ResNet generator's two downsamplings).
    MultipleOf(usize),
}

/// Rows and columns added before and after, to be removed again by [`crop`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Padding {
    pub rows: [usize; 2],
    pub cols: [usize; 2],
}

fn split_pad(have: usize, want: usize) -> [usize; 2] {
    let extra = want - have;
    [extra / 2, extra - extra / 2]
}

/// Pads `img` centred to `target`, filling with `fill` (the normalised background).
pub fn pad(img: &Image, target: PadTarget, fill: f32) -> DataResult<(Image, Padding)> {
    let (rows, cols) = match target {
        PadTarget::Exact(r, c) => (r, c),
        PadTarget::MultipleOf(m) => (
            img.rows.div_ceil(m.max(1)) * m.max(1),
            img.cols.div_ceil(m.max(1)) * m.max(1),
        ),
    };
    if rows < img.rows || cols < img.cols {
        return Err(DataError::Mismatch(format!(
            "a {}x{} slice does not fit the network's {rows}x{cols}",
            img.rows, img.cols
        )));
    }
    let padding = Padding {
        rows: split_pad(img.rows, rows),
        cols: split_pad(img.cols, cols),
    };
    let mut data = vec![fill; rows * cols];
    for r in 0..img.rows {
        let dst = (r + padding.rows[0]) * cols + padding.cols[0];
        data[dst..dst + img.cols].copy_from_slice(&img.data[r * img.cols..(r + 1) * img.cols]);
    }
    Ok((Image { rows, cols, data }, padding))
}

/// Removes `padding` again.
pub fn crop(img: &Image, padding: Padding) -> Image {
    let rows = img.rows - padding.rows[0] - padding.rows[1];
    let cols = img.cols - padding.cols[0] - padding.cols[1];
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let src = (r + padding.rows[0]) * img.cols + padding.cols[0];
        data.extend_from_slice(&img.data[src..src + cols]);
    }
    Image { rows, cols, data }
}

/// Slices along `axis` with at least `min_foreground` voxels that are not 0 in `data`
/// (training skips near-empty slices; prediction passes 0 and gets every slice).
pub fn informative(
    data: &[f32],
    dims: [usize; 3],
    axis: usize,
    min_foreground: usize,
) -> Vec<usize> {
    let foreground = |k: usize| {
        slice(data, dims, axis, k)
            .data
            .iter()
            .filter(|&&v| v != 0.0)
            .count()
    };
    (0..dims[axis])
        .filter(|&k| min_foreground == 0 || foreground(k) >= min_foreground)
        .collect()
}

//! 2D generators on volumes: every slice along an axis, padded to the network's size, in
//! batches, cropped back and reassembled.

use crate::data::dataset::batch_tensor;
use crate::data::slices::{self, Image, PadTarget};
use crate::error::Result;
use crate::nn::layers::Mode;
use crate::nn::nets::Network;

/// How a volume is cut and run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceInference {
    pub axis: usize,
    pub pad: PadTarget,
    pub batch_size: usize,
    pub mode: Mode,
}

impl SliceInference {
    /// Slices per forward pass: 1 with batch statistics, so every slice is normalised with
    /// its own statistics as the reference's test script (batch size 1) does; 4 otherwise.
    pub fn batch_for(mode: &Mode) -> usize {
        if mode.batch_stats { 1 } else { 4 }
    }
}

/// Translates a normalised volume (`data`, first axis fastest) slice by slice; `background`
/// fills the padding. Returns the generator's output volume, same dims.
pub fn translate(
    net: &mut dyn Network,
    data: &[f32],
    dims: [usize; 3],
    background: f32,
    opts: &SliceInference,
) -> Result<Vec<f32>> {
    let mut out: Vec<Image> = Vec::with_capacity(dims[opts.axis]);
    let ks: Vec<usize> = (0..dims[opts.axis]).collect();
    for chunk in ks.chunks(opts.batch_size.max(1)) {
        let mut padded = Vec::with_capacity(chunk.len());
        let mut padding = None;
        for &k in chunk {
            let (img, p) = slices::pad(
                &slices::slice(data, dims, opts.axis, k),
                opts.pad,
                background,
            )?;
            padded.push(img);
            padding = Some(p);
        }
        let refs: Vec<&Image> = padded.iter().collect();
        let y = super::forward_on_host_data(net, batch_tensor(&refs)?, &opts.mode)?;
        let (rows, cols) = (padded[0].rows, padded[0].cols);
        for img in y.as_slice().chunks(rows * cols).take(chunk.len()) {
            let full = Image {
                rows,
                cols,
                data: img.to_vec(),
            };
            out.push(slices::crop(&full, padding.expect("a non-empty chunk")));
        }
    }
    Ok(slices::assemble(&out, dims, opts.axis)?)
}

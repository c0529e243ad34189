//! 8- and 16-bit grayscale PNG export of slices, for people and for the PyTorch reference's
//! image-folder datasets.

use std::io::BufWriter;
use std::path::Path;

use super::error::{DataError, DataResult};
use super::slices::Image;

/// PNG sample depth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitDepth {
    Eight,
    Sixteen,
}

/// Quantises `img`, mapping `[lo, hi]` linearly to the full sample range (values outside are
/// clipped). The reference's `tensor2im` is `lo = -1`, `hi = 1` at 8 bits.
pub fn quantize(img: &Image, lo: f32, hi: f32, depth: BitDepth) -> Vec<u16> {
    let max = match depth {
        BitDepth::Eight => 255.0,
        BitDepth::Sixteen => 65535.0,
    };
    img.data
        .iter()
        .map(|&v| {
            ((v - lo) / (hi - lo))
                .clamp(0.0, 1.0)
                .mul_add(max, 0.0)
                .round() as u16
        })
        .collect()
}

/// Writes `img` as a grayscale PNG, atomically.
pub fn write(path: &Path, img: &Image, lo: f32, hi: f32, depth: BitDepth) -> DataResult<()> {
    let samples = quantize(img, lo, hi, depth);
    let bytes: Vec<u8> = match depth {
        BitDepth::Eight => samples.iter().map(|&v| v as u8).collect(),
        BitDepth::Sixteen => samples.iter().flat_map(|v| v.to_be_bytes()).collect(),
    };
    crate::report::write_atomic(path, |w| {
        let mut enc = png::Encoder::new(BufWriter::new(w), img.cols as u32, img.rows as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(match depth {
            BitDepth::Eight => png::BitDepth::Eight,
            BitDepth::Sixteen => png::BitDepth::Sixteen,
        });
        let mut writer = enc.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&bytes)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
    .map_err(|e| DataError::io(path, e))
}

/// Places images side by side (the pix2pix "aligned" A|B layout); all must have equal rows.
pub fn side_by_side(images: &[&Image]) -> Image {
    let rows = images[0].rows;
    let cols: usize = images.iter().map(|i| i.cols).sum();
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for img in images {
            data.extend_from_slice(&img.data[r * img.cols..(r + 1) * img.cols]);
        }
    }
    Image { rows, cols, data }
}

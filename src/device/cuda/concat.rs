//! Channel concat and split (`kernels/concat.cu`).

use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{CudaBackend, CudaResult, err, launch_1d};

impl CudaBackend {
    /// `parts` (data, channels; each N, C_i, spatial) concatenated along the channels, one
    /// launch per part, as `ops::concat::concat_channels`.
    pub fn concat_channels(
        &self,
        parts: &[(&[f32], usize)],
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        let total: usize = parts.iter().map(|p| p.1).sum();
        let mut whole = self.poisoned(n * total * spatial)?;
        let mut c0 = 0;
        for &(data, c) in parts {
            let part = self.upload(data)?;
            self.channel_slice_copy(&part, &mut whole, data.len(), [c, c0, total, spatial], 1)?;
            c0 += c;
        }
        self.download(&whole)
    }

    /// Part `index`'s slice of the gradient `dy` of a concat of parts with `channels`
    /// (`ops::concat::split_channels`).
    pub fn split_channels(
        &self,
        dy: &[f32],
        channels: &[usize],
        index: usize,
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        let total: usize = channels.iter().sum();
        let (c0, c) = (channels[..index].iter().sum::<usize>(), channels[index]);
        let whole = self.upload(dy)?;
        let len = n * c * spatial;
        let mut part = self.poisoned(len)?;
        self.channel_slice_copy(&whole, &mut part, len, [c, c0, total, spatial], 0)?;
        self.download(&part)
    }

    /// One `channel_slice_copy_f32` launch over a part of `part_len` elements; `layout` is
    /// (part channels, first channel in the whole, whole channels, spatial).
    fn channel_slice_copy(
        &self,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
        part_len: usize,
        layout: [usize; 4],
        into_whole: i32,
    ) -> CudaResult<()> {
        let [c, c0, total, spatial] = layout.map(|v| v as i32);
        let len = part_len as i64;
        let mut l = self
            .stream
            .launch_builder(&self.functions.channel_slice_copy);
        l.arg(src)
            .arg(dst)
            .arg(&len)
            .arg(&c)
            .arg(&c0)
            .arg(&total)
            .arg(&spatial)
            .arg(&into_whole);
        // SAFETY: matches channel_slice_copy_f32; the part holds part_len floats and the
        // whole N * total * spatial, as the layout says.
        unsafe { l.launch(launch_1d(part_len)) }.map_err(err("channel_slice_copy_f32"))?;
        Ok(())
    }
}

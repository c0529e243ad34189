//! Channel concat and split (`kernels/concat.cu`).

use std::sync::Arc;

use cudarc::driver::PushKernelArg;

use super::{CudaBackend, CudaResult, DeviceBuffer, err, launch_planes};

impl CudaBackend {
    /// `parts` (data, channels; each N, C_i, spatial) concatenated along the channels, one
    /// launch per part, as `ops::concat::concat_channels`.
    pub fn launch_concat_channels(
        self: &Arc<Self>,
        parts: &[(&DeviceBuffer, usize)],
        n: usize,
        spatial: usize,
    ) -> CudaResult<DeviceBuffer> {
        let total: usize = parts.iter().map(|p| p.1).sum();
        let mut whole = self.alloc(n * total * spatial)?;
        let mut c0 = 0;
        for &(part, c) in parts {
            self.channel_slice_copy(part, &mut whole, [n, c, c0, total, spatial], 1)?;
            c0 += c;
        }
        Ok(whole)
    }

    /// Part `index` of `whole`, whose channels are split as `channels` (the backward of
    /// concat), as `ops::concat::split_channels`.
    pub fn launch_split_channels(
        self: &Arc<Self>,
        whole: &DeviceBuffer,
        channels: &[usize],
        index: usize,
        n: usize,
        spatial: usize,
    ) -> CudaResult<DeviceBuffer> {
        let total: usize = channels.iter().sum();
        let (c0, c) = (channels[..index].iter().sum::<usize>(), channels[index]);
        let mut part = self.alloc(n * c * spatial)?;
        self.channel_slice_copy(whole, &mut part, [n, c, c0, total, spatial], 0)?;
        Ok(part)
    }

    /// Copies one part's channels into (`into_whole` 1) or out of (0) the whole;
    /// `layout` is the images, the part's channels, its first channel in the whole, the
    /// whole's channels and the spatial size.
    fn channel_slice_copy(
        &self,
        src: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        layout: [usize; 5],
        into_whole: i32,
    ) -> CudaResult<()> {
        let config = launch_planes(layout[0] * layout[1], layout[4]);
        let [n, c, c0, total, spatial] = layout.map(|v| v as i32);
        let mut l = self
            .stream
            .launch_builder(&self.functions.channel_slice_copy);
        l.arg(src.slice())
            .arg(dst.slice_mut())
            .arg(&n)
            .arg(&c)
            .arg(&c0)
            .arg(&total)
            .arg(&spatial)
            .arg(&into_whole);
        // SAFETY: matches channel_slice_copy_f32(const float* src, float* dst, int n, int c,
        // int c0, int total, int spatial, int into_whole); the part holds n * c * spatial
        // floats and the whole n * total * spatial.
        unsafe { l.launch(config) }.map_err(err("channel_slice_copy_f32"))?;
        Ok(())
    }

    /// [`Self::launch_concat_channels`] on host data.
    pub fn concat_channels(
        self: &Arc<Self>,
        parts: &[(&[f32], usize)],
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        let buffers = parts
            .iter()
            .map(|p| self.upload_buffer(p.0))
            .collect::<CudaResult<Vec<_>>>()?;
        let parts: Vec<_> = buffers.iter().zip(parts).map(|(b, p)| (b, p.1)).collect();
        self.launch_concat_channels(&parts, n, spatial)?.to_host()
    }

    /// [`Self::launch_split_channels`] on host data.
    pub fn split_channels(
        self: &Arc<Self>,
        whole: &[f32],
        channels: &[usize],
        index: usize,
        n: usize,
        spatial: usize,
    ) -> CudaResult<Vec<f32>> {
        self.launch_split_channels(&self.upload_buffer(whole)?, channels, index, n, spatial)?
            .to_host()
    }
}

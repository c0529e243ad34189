//! A device tensor's storage: `len` floats in a pooled buffer of the backend that made it,
//! which goes back to that backend's cache when the last tensor holding it is dropped.

use std::ops::Range;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaView};

use super::{CudaBackend, CudaResult, StreamAllocator, err};
use crate::device::pool::Pooled;

/// Floats on one GPU. The pooled buffer may be longer (its size class); only the first
/// `len` elements belong to the tensor.
pub struct DeviceBuffer {
    backend: Arc<CudaBackend>,
    data: Pooled<StreamAllocator>,
    len: usize,
}

impl DeviceBuffer {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn backend(&self) -> &Arc<CudaBackend> {
        &self.backend
    }
    /// The whole pooled buffer, for kernel arguments (kernels are told `len`).
    pub(crate) fn slice(&self) -> &CudaSlice<f32> {
        &self.data
    }
    pub(crate) fn slice_mut(&mut self) -> &mut CudaSlice<f32> {
        &mut self.data
    }
    /// The tensor's elements, exactly `len` of them.
    pub(crate) fn view(&self) -> CudaView<'_, f32> {
        self.data.slice(0..self.len)
    }
    /// Sets every element to zero, in place.
    pub fn set_zero(&mut self) -> CudaResult<()> {
        let len = self.len;
        let stream = &self.backend.stream;
        stream
            .memset_zeros(&mut self.data.slice_mut(0..len))
            .map_err(err("memset"))
    }

    /// The elements back on the host (waits for the stream).
    pub fn to_host(&self) -> CudaResult<Vec<f32>> {
        self.backend.download(&self.view())
    }
}

impl CudaBackend {
    /// A buffer of `len` floats whose contents are whatever its last user left: for outputs
    /// that a kernel writes in full.
    /// Under `set_poison(true)` it is NaNs instead.
    pub fn alloc(self: &Arc<Self>, len: usize) -> CudaResult<DeviceBuffer> {
        let mut b = DeviceBuffer {
            backend: Arc::clone(self),
            data: self.pool.take(len)?,
            len,
        };
        if self.poison.load(std::sync::atomic::Ordering::Relaxed) {
            self.stream
                .memcpy_htod(&vec![f32::NAN; len], &mut b.data.slice_mut(0..len))
                .map_err(err("poisoning a buffer"))?;
        }
        Ok(b)
    }

    /// Host data copied to the device.
    pub fn upload_buffer(self: &Arc<Self>, data: &[f32]) -> CudaResult<DeviceBuffer> {
        let mut b = self.alloc(data.len())?;
        self.stream
            .memcpy_htod(data, &mut b.data.slice_mut(0..data.len()))
            .map_err(err("copy to the device"))?;
        Ok(b)
    }

    /// Elements `range` of `src` in a buffer of their own.
    pub fn copy_range(
        self: &Arc<Self>,
        src: &DeviceBuffer,
        range: Range<usize>,
    ) -> CudaResult<DeviceBuffer> {
        let mut b = self.alloc(range.len())?;
        let len = range.len();
        self.stream
            .memcpy_dtod(&src.data.slice(range), &mut b.data.slice_mut(0..len))
            .map_err(err("device copy"))?;
        Ok(b)
    }

    /// `src` copied into elements `at..` of `dst`.
    pub fn copy_into(
        &self,
        src: &DeviceBuffer,
        dst: &mut DeviceBuffer,
        at: usize,
    ) -> CudaResult<()> {
        self.stream
            .memcpy_dtod(&src.view(), &mut dst.data.slice_mut(at..at + src.len))
            .map_err(err("device copy"))
    }
}

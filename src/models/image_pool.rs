//! The reference's image pool (pool_size 50): the discriminator sees a mix of current and
//! earlier fakes. It works image by image on detached data, on the device the fakes are on.

use rand::{Rng, RngExt};

use crate::error::Result;
use crate::tensor::Tensor;

/// Up to `size` earlier fake images, each `[1, C, H, W]`.
#[derive(Clone, Debug, Default)]
pub struct ImagePool {
    pub size: usize,
    pub images: Vec<Tensor>,
}

impl ImagePool {
    pub fn new(size: usize) -> ImagePool {
        ImagePool {
            size,
            images: Vec::new(),
        }
    }

    /// For each image of `batch`: while the pool is filling, store and return it; afterwards,
    /// with probability 1/2 return a random stored image and store the new one in its place,
    /// otherwise return the new image.
    pub fn query<R: Rng + ?Sized>(&mut self, batch: &Tensor, rng: &mut R) -> Result<Tensor> {
        if self.size == 0 {
            return Ok(batch.clone());
        }
        let n = batch.dims()[0];
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let image = batch.batch_item(i)?;
            if self.images.len() < self.size {
                self.images.push(image.clone());
                out.push(image);
            } else if rng.random::<f64>() > 0.5 {
                let j = rng.random_range(0..self.size);
                out.push(std::mem::replace(&mut self.images[j], image));
            } else {
                out.push(image);
            }
        }
        // Back into one batch, in order (stored images on another device are an error here).
        Tensor::cat_batch(&out)
    }
}

//! The reference's image pool (pool_size 50): the discriminator sees a mix of current and
//! earlier fakes. It works image by image on detached data.

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
        let d = batch.dims();
        let per = batch.numel() / d[0];
        let mut shape = d.to_vec();
        shape[0] = 1;
        let mut out = Vec::with_capacity(d[0]);
        for i in 0..d[0] {
            let image = Tensor::from_vec(
                shape.clone(),
                batch.as_slice()[i * per..(i + 1) * per].to_vec(),
            )?;
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
        // Back into one batch, in order.
        let data: Vec<f32> = out
            .iter()
            .flat_map(|t| t.as_slice().iter().copied())
            .collect();
        Tensor::from_vec(d.to_vec(), data)
    }
}

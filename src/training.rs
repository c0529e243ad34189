//! A training run: its configuration, networks, the epoch loop with the reference's
//! learning-rate policy, validation, samples, history, and checkpoints that resume exactly.
//!
//! Randomness is derived, not carried: epoch `e`'s sample order comes from (seed, e) and
//! iteration `i`'s crops, flips, pool draws and dropout masks from (seed, i). So a run
//! resumed from a checkpoint replays exactly what an uninterrupted run would have done.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::checkpoint::native::{
    HostTensor, load_adam, load_network, read_tensors, save_adam, save_network, write_tensors,
};
use crate::data::DataError;
use crate::data::augment::{AugmentOptions, augment};
use crate::data::dataset::{
    PairedSlices, SubjectFiles, batch_tensor, batches, check_same_grid, shuffled,
};
use crate::data::nifti::{ReadOptions, read};
use crate::data::normalize::{NormMethod, Normalizer};
use crate::data::patches::{PatchOptions, extract, place};
use crate::data::png;
use crate::data::slices::{self, Image, PadTarget};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::infer::slicewise::{SliceInference, translate};
use crate::infer::sliding::{self, Blend, SlidingWindow};
use crate::metrics::{EvalOptions, evaluate};
use crate::models::cyclegan::{CycleLoss, CycleNets};
use crate::models::image_pool::ImagePool;
use crate::models::pix2pix::Pix2PixLoss;
use crate::models::{Losses, Trained, cyclegan, pix2pix};
use crate::nn::init::InitKind;
use crate::nn::layers::Mode;
use crate::nn::nets::{
    DiscriminatorConfig, GeneratorConfig, Network, build_discriminator, build_generator,
};
use crate::optim::adam::AdamConfig;
use crate::optim::schedule::LrPolicy;
use crate::report::history::{EpochRecord, ValScores, write_csv, write_html};
use crate::tensor::Tensor;

/// Which model a run trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Pix2pix,
    Cyclegan,
    /// CycleGAN with 3D networks, trained on patches, applied by sliding windows.
    Cyclegan3d,
}

/// Patch training and sliding-window settings of the volumetric CycleGAN; sizes (x, y, z).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct VolumetricConfig {
    pub patch: [usize; 3],
    pub stride: [usize; 3],
    pub blend: Blend,
    /// Patches drawn per epoch (per domain).
    pub patches_per_epoch: usize,
    /// Fraction of foreground voxels a training patch should have.
    pub min_foreground: f64,
    /// Probability of centring a patch on a random foreground voxel.
    pub foreground_bias: f64,
    /// Resample to this voxel size (mm, x y z) before patching, and predictions back.
    #[serde(default)]
    pub spacing: Option<[f32; 3]>,
    /// Windows per generator call at prediction and validation (runs from before it was
    /// an option used 2).
    #[serde(default = "default_window_batch")]
    pub window_batch: usize,
}

fn default_window_batch() -> usize {
    2
}

/// One modality's normalised training volumes.
#[derive(Clone, Debug, Default)]
pub struct VolumeSet {
    pub subjects: Vec<String>,
    pub volumes: Vec<Vec<f32>>,
    pub dims: Vec<[usize; 3]>,
    pub masks: Vec<Vec<bool>>,
    pub normalizers: Vec<Normalizer>,
}

/// What a run trains on: aligned slices (2D models) or whole volumes (3D).
pub enum TrainingData {
    Slices(PairedSlices),
    Volumes { a: VolumeSet, b: VolumeSet },
}

impl TrainingData {
    /// Slices, or volumes per domain.
    pub fn len(&self) -> usize {
        match self {
            TrainingData::Slices(s) => s.len(),
            TrainingData::Volumes { a, .. } => a.volumes.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a generator is applied at test time (see README: the reference runs batch norm in
/// training mode unless `--eval`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormStats {
    /// Batch norm with each batch's own statistics (the reference's default test behaviour,
    /// and what a generator trained with batch size 1 saw in training).
    Batch,
    /// Batch norm with running statistics (the reference's `--eval`).
    Running,
}

/// Where the data comes from and how it becomes slices.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    pub root: PathBuf,
    pub a: String,
    pub b: String,
    pub train_subjects: Vec<String>,
    pub val_subjects: Vec<String>,
    pub axis: usize,
    pub min_foreground: usize,
    /// Slices are padded to this size.
    pub size: [usize; 2],
    pub percentiles: [f64; 2],
    pub flip: bool,
    pub load_size: Option<usize>,
    pub crop_size: Option<usize>,
}

/// Everything needed to rebuild a run's model and its normalisation (`config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub generator: GeneratorConfig,
    pub discriminator: DiscriminatorConfig,
    pub pix2pix: Pix2PixLoss,
    pub cycle: CycleLoss,
    pub pool_size: usize,
    pub adam: AdamConfig,
    pub n_epochs: usize,
    pub n_epochs_decay: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub init: InitKind,
    pub init_gain: f32,
    pub data: DataConfig,
    pub norm_stats: NormStats,
    /// Validate every this many epochs (0: never).
    pub val_every: usize,
    /// Keep `epoch_<n>` checkpoints every this many epochs (0: only latest and best).
    pub save_epoch_freq: usize,
    /// Mean normalisation of the training subjects, per domain: maps outputs back to units.
    pub norm_a: Option<Normalizer>,
    pub norm_b: Option<Normalizer>,
    /// Patch and window settings (volumetric CycleGAN only).
    #[serde(default)]
    pub volumetric: Option<VolumetricConfig>,
}

impl TrainConfig {
    pub fn norm_method(&self) -> NormMethod {
        NormMethod::Percentile {
            low: self.data.percentiles[0],
            high: self.data.percentiles[1],
        }
    }

    pub fn lr_policy(&self) -> LrPolicy {
        LrPolicy::Linear {
            n_epochs: self.n_epochs,
            n_epochs_decay: self.n_epochs_decay,
            epoch_count: 1,
        }
    }

    pub fn total_epochs(&self) -> usize {
        self.n_epochs + self.n_epochs_decay
    }

    pub fn inference_mode(&self, norm_stats: NormStats) -> Mode {
        Mode::inference(norm_stats == NormStats::Batch)
    }
}

/// Translation direction of a CycleGAN (pix2pix only has AtoB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    AtoB,
    BtoA,
}

/// The networks of a run (one per run, so the variants' size difference does not matter).
#[allow(clippy::large_enum_variant)]
pub enum Nets {
    Pix2pix { g: Trained, d: Trained },
    Cyclegan(Box<CycleNets>),
}

impl Nets {
    pub fn build(cfg: &TrainConfig) -> Nets {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(cfg.seed);
        let init = (cfg.init, cfg.init_gain);
        let mut new =
            |name, net: Box<dyn Network>| Trained::new(name, net, init, cfg.adam, &mut rng);
        match cfg.model {
            ModelKind::Pix2pix => {
                let g = new("G", build_generator(&cfg.generator));
                let d = new("D", build_discriminator(&cfg.discriminator));
                Nets::Pix2pix { g, d }
            }
            ModelKind::Cyclegan | ModelKind::Cyclegan3d => {
                let g_b_cfg = GeneratorConfig {
                    input_nc: cfg.generator.output_nc,
                    output_nc: cfg.generator.input_nc,
                    ..cfg.generator
                };
                let d_b_cfg = DiscriminatorConfig {
                    input_nc: cfg.generator.input_nc,
                    ..cfg.discriminator
                };
                let d_a_cfg = DiscriminatorConfig {
                    input_nc: cfg.generator.output_nc,
                    ..cfg.discriminator
                };
                Nets::Cyclegan(Box::new(CycleNets {
                    g_a: new("G_A", build_generator(&cfg.generator)),
                    g_b: new("G_B", build_generator(&g_b_cfg)),
                    d_a: new("D_A", build_discriminator(&d_a_cfg)),
                    d_b: new("D_B", build_discriminator(&d_b_cfg)),
                    pool_a: ImagePool::new(cfg.pool_size),
                    pool_b: ImagePool::new(cfg.pool_size),
                }))
            }
        }
    }

    pub fn all_mut(&mut self) -> Vec<&mut Trained> {
        match self {
            Nets::Pix2pix { g, d } => vec![g, d],
            Nets::Cyclegan(n) => vec![&mut n.g_a, &mut n.g_b, &mut n.d_a, &mut n.d_b],
        }
    }

    /// The generator for `direction`.
    pub fn generator(&mut self, direction: Direction) -> Result<&mut Trained> {
        match (self, direction) {
            (Nets::Pix2pix { g, .. }, Direction::AtoB) => Ok(g),
            (Nets::Pix2pix { .. }, Direction::BtoA) => {
                Err(Error::Params("a pix2pix run only translates A to B".into()))
            }
            (Nets::Cyclegan(n), Direction::AtoB) => Ok(&mut n.g_a),
            (Nets::Cyclegan(n), Direction::BtoA) => Ok(&mut n.g_b),
        }
    }
}

/// Run state saved with each checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Completed epochs.
    pub epoch: usize,
    /// Completed iterations (batches).
    pub iteration: u64,
    pub best_psnr: Option<f64>,
    pub history: Vec<EpochRecord>,
}

/// A run folder with its model in memory.
pub struct Run {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub nets: Nets,
    pub state: RunState,
    /// Where the networks train and run (`to_device`); the CPU until moved.
    pub device: Device,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Data(DataError::io(path, e))
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Replaces folder `dir` by what `fill` writes into a fresh sibling, so a crash leaves either
/// the old or the new checkpoint, never a mix.
fn replace_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let old = dir.with_extension("old");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    fill(&tmp)?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// A pool's images on the host, named for its checkpoint file.
fn pool_tensors(prefix: &str, pool: &ImagePool) -> Result<Vec<HostTensor>> {
    pool.images
        .iter()
        .enumerate()
        .map(|(i, t)| Ok((format!("{prefix}.{i}"), t.dims().to_vec(), t.to_vec()?)))
        .collect()
}

impl Run {
    /// A new run in `dir` (created; must not hold a run already).
    pub fn create(dir: &Path, config: TrainConfig) -> Result<Run> {
        let cfg_path = dir.join("config.json");
        if cfg_path.exists() {
            return Err(Error::Data(DataError::invalid(
                dir,
                "already holds a run: use --continue to resume it, or another --run folder",
            )));
        }
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let nets = Nets::build(&config);
        let run = Run {
            dir: dir.to_path_buf(),
            config,
            nets,
            state: RunState::default(),
            device: Device::Cpu,
        };
        run.write_config()?;
        Ok(run)
    }

    fn write_config(&self) -> Result<()> {
        let path = self.dir.join("config.json");
        let json = serde_json::to_string_pretty(&self.config).expect("config serialises");
        crate::report::write_atomic(&path, |w| w.write_all(json.as_bytes())).map_err(io(&path))
    }

    /// Reads a run's config and its checkpoint `tag` (`latest`, `best`, `epoch_<n>`).
    pub fn open(dir: &Path, tag: &str) -> Result<Run> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
        let config: TrainConfig = serde_json::from_str(&text).map_err(|e| {
            Error::Data(DataError::invalid(
                &cfg_path,
                format!("not a valid run config: {e}"),
            ))
        })?;
        let nets = Nets::build(&config);
        let mut run = Run {
            dir: dir.to_path_buf(),
            config,
            nets,
            state: RunState::default(),
            device: Device::Cpu,
        };
        run.load(tag)?;
        Ok(run)
    }

    fn checkpoint_dir(&self, tag: &str) -> PathBuf {
        self.dir.join("checkpoints").join(tag)
    }

    /// Saves every network, optimizer, pool and the run state as checkpoint `tag`.
    pub fn save(&mut self, tag: &str) -> Result<()> {
        let dir = self.checkpoint_dir(tag);
        std::fs::create_dir_all(dir.parent().expect("checkpoints folder")).map_err(io(&dir))?;
        let state = serde_json::to_string_pretty(&self.state).expect("state serialises");
        let nets = &mut self.nets;
        replace_dir(&dir, |tmp| {
            for t in nets.all_mut() {
                save_network(&tmp.join(format!("{}.safetensors", t.name)), t.net.as_mut())?;
                save_adam(&tmp.join(format!("{}.adam.safetensors", t.name)), &t.adam)?;
            }
            if let Nets::Cyclegan(n) = nets {
                let mut tensors = pool_tensors("pool_a", &n.pool_a)?;
                tensors.extend(pool_tensors("pool_b", &n.pool_b)?);
                let views: Vec<_> = tensors
                    .iter()
                    .map(|(name, shape, data)| (name.clone(), shape.clone(), &data[..]))
                    .collect();
                write_tensors(&tmp.join("pools.safetensors"), &views, Default::default())?;
            }
            let path = tmp.join("state.json");
            crate::report::write_atomic(&path, |w| w.write_all(state.as_bytes())).map_err(io(&path))
        })
    }

    /// Loads checkpoint `tag` into this run.
    pub fn load(&mut self, tag: &str) -> Result<()> {
        let dir = self.checkpoint_dir(tag);
        if !dir.is_dir() {
            return Err(Error::Data(DataError::invalid(&dir, "no such checkpoint")));
        }
        for t in self.nets.all_mut() {
            load_network(&dir.join(format!("{}.safetensors", t.name)), t.net.as_mut())?;
            load_adam(
                &dir.join(format!("{}.adam.safetensors", t.name)),
                &mut t.adam,
            )?;
        }
        if let Nets::Cyclegan(n) = &mut self.nets {
            let (tensors, _) = read_tensors(&dir.join("pools.safetensors"))?;
            for (prefix, pool) in [("pool_a", &mut n.pool_a), ("pool_b", &mut n.pool_b)] {
                let device = &self.device;
                pool.images = (0..)
                    .map_while(|i| tensors.get(&format!("{prefix}.{i}")))
                    .map(|(shape, data)| {
                        Tensor::from_vec(shape.clone(), data.clone())?.to_device(device)
                    })
                    .collect::<Result<_>>()?;
            }
        }
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        self.state = serde_json::from_str(&text).map_err(|e| {
            Error::Data(DataError::invalid(&path, format!("invalid run state: {e}")))
        })?;
        Ok(())
    }

    /// Moves every network, optimizer and image pool to `device`; training and inference
    /// then run there.
    pub fn to_device(&mut self, device: Device) -> Result<()> {
        for t in self.nets.all_mut() {
            t.to_device(&device)?;
        }
        if let Nets::Cyclegan(n) = &mut self.nets {
            for pool in [&mut n.pool_a, &mut n.pool_b] {
                for image in pool.images.iter_mut() {
                    *image = image.to_device(&device)?;
                }
            }
        }
        self.device = device;
        Ok(())
    }

    /// Learning rate of the next epoch (the reference's linear policy, stepped per epoch).
    pub fn lr(&self) -> f64 {
        self.config
            .lr_policy()
            .lr(self.config.adam.lr, self.state.epoch)
    }

    /// Trains one epoch over `data`. `progress(done, total, losses)` is told each iteration.
    pub fn train_epoch(
        &mut self,
        data: &TrainingData,
        progress: impl FnMut(usize, usize, &Losses),
    ) -> Result<Vec<(String, f32)>> {
        match data {
            TrainingData::Slices(slices) => self.train_epoch_slices(slices, progress),
            TrainingData::Volumes { a, b } => self.train_epoch_patches(a, b, progress),
        }
    }

    /// One epoch of patch training: `patches_per_epoch` foreground-biased patches per domain
    /// from random subjects, in batches (unpaired: A and B from independent draws).
    fn train_epoch_patches(
        &mut self,
        a: &VolumeSet,
        b: &VolumeSet,
        mut progress: impl FnMut(usize, usize, &Losses),
    ) -> Result<Vec<(String, f32)>> {
        let cfg = self.config.clone();
        let vol = cfg
            .volumetric
            .ok_or_else(|| Error::Params("a volumetric run needs patch settings".into()))?;
        let lr = self.lr();
        let iterations = vol.patches_per_epoch.div_ceil(cfg.batch_size.max(1));
        let opts = PatchOptions {
            size: vol.patch,
            foreground_bias: vol.foreground_bias,
            min_foreground: vol.min_foreground,
            max_tries: 20,
        };
        let mut sums: Vec<(String, f64)> = Vec::new();
        let draw = |set: &VolumeSet, rng: &mut Xoshiro256PlusPlus| {
            let i = rng.random_range(0..set.volumes.len());
            let at = place(&set.masks[i], set.dims[i], &opts, rng);
            extract(
                &set.volumes[i],
                set.dims[i],
                at.origin,
                vol.patch,
                set.normalizers[i].background(),
            )
        };
        let shape = [cfg.batch_size, 1, vol.patch[2], vol.patch[1], vol.patch[0]];
        let batch = |set: &VolumeSet, rng: &mut Xoshiro256PlusPlus| -> Result<Tensor> {
            let data: Vec<f32> = (0..cfg.batch_size).flat_map(|_| draw(set, rng)).collect();
            Tensor::from_vec(shape, data)?.to_device(&self.device)
        };
        for done in 0..iterations {
            let iteration = self.state.iteration;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(cfg.seed, iteration));
            let (real_a, real_b) = (batch(a, &mut rng)?, batch(b, &mut rng)?);
            let Nets::Cyclegan(n) = &mut self.nets else {
                return Err(Error::Params(
                    "patch training is for the volumetric CycleGAN".into(),
                ));
            };
            let losses = cyclegan::train_step(
                n,
                &cfg.cycle,
                &real_a,
                &real_b,
                lr,
                mix(cfg.seed ^ 0xd0d0, iteration),
                &mut rng,
            )?;
            if sums.is_empty() {
                sums = losses.iter().map(|(n, _)| (n.to_string(), 0.0)).collect();
            }
            for (s, (_, v)) in sums.iter_mut().zip(&losses) {
                s.1 += *v as f64;
            }
            self.state.iteration += 1;
            progress(done + 1, iterations, &losses);
        }
        self.state.epoch += 1;
        let n = iterations.max(1) as f64;
        Ok(sums.into_iter().map(|(k, v)| (k, (v / n) as f32)).collect())
    }

    fn train_epoch_slices(
        &mut self,
        data: &PairedSlices,
        mut progress: impl FnMut(usize, usize, &Losses),
    ) -> Result<Vec<(String, f32)>> {
        let cfg = self.config.clone();
        let lr = self.lr();
        let epoch = self.state.epoch;
        let order = shuffled(
            data.len(),
            &mut Xoshiro256PlusPlus::seed_from_u64(mix(cfg.seed, 1 << 40 | epoch as u64)),
        );
        let all: Vec<&[usize]> = batches(&order, cfg.batch_size).collect();
        let aug = AugmentOptions {
            load_size: cfg.data.load_size,
            crop_size: cfg.data.crop_size,
            flip: cfg.data.flip,
        };
        let mut sums: Vec<(String, f64)> = Vec::new();
        for (done, batch) in all.iter().enumerate() {
            let iteration = self.state.iteration;
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(mix(cfg.seed, iteration));
            let (mut a_imgs, mut b_imgs) = (Vec::new(), Vec::new());
            for &i in batch.iter() {
                match cfg.model {
                    ModelKind::Pix2pix => {
                        let out = augment(&[&data.a.images[i], &data.b.images[i]], &aug, &mut rng);
                        a_imgs.push(out[0].clone());
                        b_imgs.push(out[1].clone());
                    }
                    ModelKind::Cyclegan | ModelKind::Cyclegan3d => {
                        // Unaligned: a random B for each A, each augmented on its own.
                        let j = rng.random_range(0..data.b.len());
                        a_imgs.push(augment(&[&data.a.images[i]], &aug, &mut rng).remove(0));
                        b_imgs.push(augment(&[&data.b.images[j]], &aug, &mut rng).remove(0));
                    }
                }
            }
            let on_device = |imgs: &[Image]| {
                batch_tensor(&imgs.iter().collect::<Vec<_>>())?.to_device(&self.device)
            };
            let (real_a, real_b) = (on_device(&a_imgs)?, on_device(&b_imgs)?);
            let dropout_seed = mix(cfg.seed ^ 0xd0d0, iteration);
            let losses = match &mut self.nets {
                Nets::Pix2pix { g, d } => {
                    pix2pix::train_step(g, d, &cfg.pix2pix, &real_a, &real_b, lr, dropout_seed)?
                }
                Nets::Cyclegan(n) => cyclegan::train_step(
                    n,
                    &cfg.cycle,
                    &real_a,
                    &real_b,
                    lr,
                    dropout_seed,
                    &mut rng,
                )?,
            };
            if sums.is_empty() {
                sums = losses.iter().map(|(n, _)| (n.to_string(), 0.0)).collect();
            }
            for (s, (_, v)) in sums.iter_mut().zip(&losses) {
                s.1 += *v as f64;
            }
            self.state.iteration += 1;
            progress(done + 1, all.len(), &losses);
        }
        self.state.epoch += 1;
        let n = all.len().max(1) as f64;
        Ok(sums.into_iter().map(|(k, v)| (k, (v / n) as f32)).collect())
    }

    /// Slicing for inference with this run's generator.
    pub fn inference(&self, mode: Mode) -> SliceInference {
        let [r, c] = self.config.data.size;
        SliceInference {
            axis: self.config.data.axis,
            pad: PadTarget::Exact(r, c),
            batch_size: 4,
            mode,
        }
    }

    /// Translates a normalised volume with generator `direction`: slices for 2D models,
    /// sliding windows for the volumetric one, whose progress (windows done, in all)
    /// `windows` hears.
    pub fn translate_volume(
        &mut self,
        direction: Direction,
        data: &[f32],
        dims: [usize; 3],
        background: f32,
        mode: Mode,
        windows: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<f32>> {
        let slices = self.inference(mode);
        let vol = self.config.volumetric;
        let g = self.nets.generator(direction)?;
        match vol {
            Some(v) => {
                let window = SlidingWindow {
                    patch: v.patch,
                    stride: v.stride,
                    blend: v.blend,
                    batch: v.window_batch,
                };
                let device = g.net.arena().device();
                sliding::run(
                    data,
                    dims,
                    background,
                    &window,
                    &device,
                    |patches| crate::infer::forward_no_grad(g.net.as_mut(), patches, &mode),
                    windows,
                )
            }
            None => translate(g.net.as_mut(), data, dims, background, &slices),
        }
    }

    /// Scores the generator on the validation subjects in normalised units (data range 2,
    /// background kept at -1), and returns a sample grid (real A | fake B | real B) of the
    /// first subject's middle slice.
    pub fn validate(&mut self, subjects: &[SubjectFiles]) -> Result<(ValScores, Image)> {
        let mode = self.config.inference_mode(self.config.norm_stats);
        let axis = self.config.data.axis;
        let method = self.config.norm_method();
        let (mut psnr, mut ssim, mut mae) = (0.0, 0.0, 0.0);
        let mut sample = None;
        for s in subjects {
            let (va, vb) = (
                read(&s.a, &ReadOptions::default())?,
                read(&s.b, &ReadOptions::default())?,
            );
            check_same_grid(&va, &vb)?;
            let (na, nb) = (Normalizer::fit(&va, method)?, Normalizer::fit(&vb, method)?);
            let (xa, xb) = (na.apply(&va.data), nb.apply(&vb.data));
            let mut fake = self.translate_volume(
                Direction::AtoB,
                &xa,
                va.dims,
                na.background(),
                mode,
                &mut |_, _| {},
            )?;
            for (f, &v) in fake.iter_mut().zip(&va.data) {
                if v == 0.0 {
                    *f = nb.background();
                }
            }
            let scores = evaluate(
                &fake,
                &xb,
                va.dims,
                &EvalOptions {
                    data_range: Some(2.0),
                    axis,
                    ..Default::default()
                },
            )?;
            psnr += scores.psnr;
            ssim += scores.ssim;
            mae += scores.mae;
            if sample.is_none() {
                let k = va.dims[axis] / 2;
                let cut = |d: &[f32]| slices::slice(d, va.dims, axis, k);
                sample = Some(png::side_by_side(&[&cut(&xa), &cut(&fake), &cut(&xb)]));
            }
        }
        let n = subjects.len().max(1) as f64;
        let sample =
            sample.ok_or_else(|| Error::Params("validation needs at least one subject".into()))?;
        Ok((
            ValScores {
                psnr: psnr / n,
                ssim: ssim / n,
                mae: mae / n,
            },
            sample,
        ))
    }

    /// Records an epoch: history, CSV, report, sample, and checkpoints (`latest`, every
    /// `save_epoch_freq`, and `best` by validation PSNR).
    pub fn finish_epoch(
        &mut self,
        losses: Vec<(String, f32)>,
        seconds: f64,
        lr: f64,
        val: Option<(ValScores, Image)>,
    ) -> Result<()> {
        let epoch = self.state.epoch;
        let mut sample_rel = None;
        if let Some((_, img)) = &val {
            let rel = format!("samples/epoch_{epoch:03}.png");
            let path = self.dir.join(&rel);
            std::fs::create_dir_all(path.parent().expect("samples folder")).map_err(io(&path))?;
            png::write(&path, img, -1.0, 1.0, png::BitDepth::Eight)?;
            sample_rel = Some(rel);
        }
        let scores = val.as_ref().map(|v| v.0);
        self.state.history.push(EpochRecord {
            epoch,
            iteration: self.state.iteration,
            lr,
            seconds,
            losses,
            val: scores,
            sample: sample_rel,
        });
        let is_best = scores.is_some_and(|s| self.state.best_psnr.is_none_or(|b| s.psnr > b));
        if is_best {
            self.state.best_psnr = scores.map(|s| s.psnr);
        }
        let csv = self.dir.join("loss_log.csv");
        write_csv(&csv, &self.state.history).map_err(io(&csv))?;
        let html = self.dir.join("report.html");
        let title = format!(
            "mrgan {:?} {} -> {}",
            self.config.model, self.config.data.a, self.config.data.b
        );
        write_html(&html, &title, &self.state.history).map_err(io(&html))?;
        self.save("latest")?;
        if is_best {
            self.save("best")?;
        }
        if self.config.save_epoch_freq > 0 && epoch.is_multiple_of(self.config.save_epoch_freq) {
            self.save(&format!("epoch_{epoch:03}"))?;
        }
        Ok(())
    }
}

/// Loads the training data of `config` (slices, or whole volumes for the volumetric model)
/// and fills in its mean normalisers.
pub fn load_training_data(
    config: &mut TrainConfig,
    subjects: &[SubjectFiles],
) -> Result<TrainingData> {
    if config.model == ModelKind::Cyclegan3d {
        let method = config.norm_method();
        let (mut a, mut b) = (VolumeSet::default(), VolumeSet::default());
        for s in subjects {
            for (set, path) in [(&mut a, &s.a), (&mut b, &s.b)] {
                let v = resampled(
                    read(path, &ReadOptions::default())?,
                    config.volumetric.and_then(|c| c.spacing),
                );
                let n = Normalizer::fit(&v, method)?;
                set.subjects.push(s.subject.clone());
                set.volumes.push(n.apply(&v.data));
                set.masks.push(v.foreground());
                set.dims.push(v.dims);
                set.normalizers.push(n);
            }
        }
        config.norm_a = Normalizer::average(&a.normalizers);
        config.norm_b = Normalizer::average(&b.normalizers);
        return Ok(TrainingData::Volumes { a, b });
    }
    let opts = crate::data::dataset::SliceOptions {
        read: ReadOptions::default(),
        norm: config.norm_method(),
        axis: config.data.axis,
        min_foreground: config.data.min_foreground,
        pad: Some(PadTarget::Exact(config.data.size[0], config.data.size[1])),
    };
    let data = PairedSlices::load(subjects, &opts)?;
    if data.is_empty() {
        return Err(Error::Params(format!(
            "no training slice has {} foreground voxels",
            config.data.min_foreground
        )));
    }
    config.norm_a = Normalizer::average(&data.a.normalizers);
    config.norm_b = Normalizer::average(&data.b.normalizers);
    Ok(TrainingData::Slices(data))
}

/// `vol` on the grid of voxel size `spacing` (unchanged when None).
fn resampled(
    vol: crate::data::volume::Volume,
    spacing: Option<[f32; 3]>,
) -> crate::data::volume::Volume {
    let Some(to) = spacing else { return vol };
    let dims = crate::data::resample::dims_for_spacing(vol.dims, vol.spacing(), to);
    let data = crate::data::resample::resample(&vol.data, vol.dims, dims);
    crate::data::volume::Volume {
        dims,
        data,
        meta: vol.meta,
    }
}

/// Seconds since `t`.
pub fn elapsed(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Trains `run` until its last epoch: each epoch trains, validates every `val_every` epochs
/// on `val`, records and checkpoints. `on_iter(epoch, done, total, losses)` follows
/// iterations, `on_epoch(record)` epochs.
pub fn fit(
    run: &mut Run,
    data: &TrainingData,
    val: &[SubjectFiles],
    mut on_iter: impl FnMut(usize, usize, usize, &Losses),
    mut on_epoch: impl FnMut(&EpochRecord),
) -> Result<()> {
    while run.state.epoch < run.config.total_epochs() {
        let start = Instant::now();
        let lr = run.lr();
        let epoch = run.state.epoch + 1;
        let losses = run.train_epoch(data, |done, total, l| on_iter(epoch, done, total, l))?;
        let every = run.config.val_every;
        let val_now = every > 0
            && !val.is_empty()
            && (epoch.is_multiple_of(every) || epoch == run.config.total_epochs());
        let scores = if val_now {
            Some(run.validate(val)?)
        } else {
            None
        };
        run.finish_epoch(losses, elapsed(start), lr, scores)?;
        on_epoch(run.state.history.last().expect("an epoch was recorded"));
    }
    Ok(())
}

/// Translates one volume with a run's generator, back in intensity units of the target
/// domain (the training subjects' mean normalisation), background (input = 0) kept at 0.
/// A volumetric run reports its sliding windows to `windows` (done, in all).
pub fn predict_volume(
    run: &mut Run,
    vol: &crate::data::volume::Volume,
    direction: Direction,
    norm_stats: NormStats,
    windows: &mut dyn FnMut(usize, usize),
) -> Result<crate::data::volume::Volume> {
    let method = run.config.norm_method();
    let target = match direction {
        Direction::AtoB => run.config.norm_b,
        Direction::BtoA => run.config.norm_a,
    }
    .ok_or_else(|| {
        Error::Params("the run config has no target normalisation (was it trained?)".into())
    })?;
    let spacing = run.config.volumetric.and_then(|c| c.spacing);
    let work = resampled(vol.clone(), spacing);
    let norm_in = Normalizer::fit(&work, method)?;
    let mode = run.config.inference_mode(norm_stats);
    let mut out = run.translate_volume(
        direction,
        &norm_in.apply(&work.data),
        work.dims,
        norm_in.background(),
        mode,
        windows,
    )?;
    if work.dims != vol.dims {
        out = crate::data::resample::resample(&out, work.dims, vol.dims);
    }
    let foreground = vol.foreground();
    Ok(vol.with_data(target.invert(&out, Some(&foreground))))
}

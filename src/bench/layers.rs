//! The convolution layers of the reference networks at 256x256, batch 1, one input and one
//! output channel (MRI), ngf = ndf = 64: the shapes every conv benchmark runs on; CycleGAN's
//! networks at 240x240, the size it trains at on BraTS slices; and the volumetric CycleGAN's
//! on its default 128x128x64 patch.

use crate::ops::conv::{ConvGeometry, ConvOptions};
use crate::ops::pad::PadMode;
use crate::tensor::Shape;

/// One conv or transposed-conv layer as the network applies it.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    pub net: &'static str,
    pub name: String,
    pub c_in: usize,
    pub c_out: usize,
    /// Input height = width.
    pub size: usize,
    /// Input depth of a volumetric layer (3D conv, cubic kernel); None for a 2D layer.
    pub depth: Option<usize>,
    pub kernel: usize,
    pub opts: ConvOptions,
    pub transposed: bool,
}

impl ConvLayer {
    /// The conv geometry whose three primitives the layer uses.
    pub fn geometry(&self, batch: usize) -> ConvGeometry {
        let spatial: Vec<usize> = self.depth.into_iter().chain([self.size; 2]).collect();
        let kernel = vec![self.kernel; spatial.len()];
        let x = Shape::new(&[&[batch, self.c_in][..], &spatial].concat());
        // Transposed convs' weights are [c_in, c_out, k...], the others' [c_out, c_in, k...].
        let (w0, w1) = if self.transposed {
            (self.c_in, self.c_out)
        } else {
            (self.c_out, self.c_in)
        };
        let w = Shape::new(&[&[w0, w1][..], &kernel].concat());
        if self.transposed {
            ConvGeometry::conv_transpose("bench", &x, &w, self.opts).expect("valid layer")
        } else {
            ConvGeometry::conv("bench", &x, &w, self.opts).expect("valid layer")
        }
    }

    /// The same layer on a volume `depth` deep (a 3D conv), or in 2D (None).
    fn with_depth(self, depth: Option<usize>) -> ConvLayer {
        ConvLayer { depth, ..self }
    }
}

fn layer(
    net: &'static str,
    name: String,
    (c_in, c_out): (usize, usize),
    size: usize,
    kernel: usize,
    opts: ConvOptions,
    transposed: bool,
) -> ConvLayer {
    ConvLayer {
        net,
        name,
        c_in,
        c_out,
        size,
        depth: None,
        kernel,
        opts,
        transposed,
    }
}

/// unet_256: eight k4 s2 p1 downsamplings, eight k4 s2 p1 transposed upsamplings whose inputs
/// (but the innermost) carry the skip connection's channels too.
pub fn unet_256() -> Vec<ConvLayer> {
    let down = [
        (1, 64),
        (64, 128),
        (128, 256),
        (256, 512),
        (512, 512),
        (512, 512),
        (512, 512),
        (512, 512),
    ];
    let s = ConvOptions::new(2, 1);
    let mut layers: Vec<ConvLayer> = down
        .iter()
        .enumerate()
        .map(|(i, &ch)| {
            layer(
                "unet_256",
                format!("down{}", i + 1),
                ch,
                256 >> i,
                4,
                s,
                false,
            )
        })
        .collect();
    for i in (0..8).rev() {
        let (ci, co) = down[i];
        let c_in = if i == 7 { co } else { 2 * co };
        let c_out = if i == 0 { 1 } else { ci };
        layers.push(layer(
            "unet_256",
            format!("up{}", i + 1),
            (c_in, c_out),
            128 >> i,
            4,
            s,
            true,
        ));
    }
    layers
}

/// resnet_9blocks: 7x7 stem and head with reflection padding 3, two stride-2 downsamplings,
/// the residual blocks' 3x3 conv with reflection padding 1 (one shape, 18 uses) and two
/// transposed upsamplings. The convs pad themselves, as the network runs them
/// (`ConvOptions::pad_mode`).
pub fn resnet_9blocks() -> Vec<ConvLayer> {
    resnet_at("resnet_9blocks", 256, None, PadMode::Reflect)
}

/// resnet_9blocks on BraTS's 240x240 slices, which `mrgan train` pads to the smallest size
/// the generator takes (a multiple of 4: 240 itself). Its rows of 120 and 60 positions are
/// no multiples of the GPU kernels' 16-deep K tiles, unlike those at 256x256.
pub fn resnet_9blocks_240() -> Vec<ConvLayer> {
    resnet_at("resnet_9blocks_240", 240, None, PadMode::Reflect)
}

/// resnet3d_9blocks, the volumetric CycleGAN's generator, on its default 128x128x64 patch
/// (64 deep, 128 x 128 in-plane): the same layers in 3D, with replication padding.
pub fn resnet3d_9blocks() -> Vec<ConvLayer> {
    resnet_at("resnet3d_9blocks", 128, Some(64), PadMode::Replicate)
}

/// The ResNet generator's layers on an image of `size` (and `depth`, for a volume).
fn resnet_at(
    net: &'static str,
    size: usize,
    depth: Option<usize>,
    pad_mode: PadMode,
) -> Vec<ConvLayer> {
    let padded = |p| ConvOptions::new(1, p).with_pad_mode(pad_mode);
    let (s2, up) = (
        ConvOptions::new(2, 1),
        ConvOptions::new(2, 1).with_output_padding(1),
    );
    // Name, channels, how many times smaller than the image the input is, kernel, options,
    // transposed.
    let table = [
        ("stem", (1, 64), 1, 7, padded(3), false),
        ("down1", (64, 128), 1, 3, s2, false),
        ("down2", (128, 256), 2, 3, s2, false),
        ("block (x18)", (256, 256), 4, 3, padded(1), false),
        ("up1", (256, 128), 4, 3, up, true),
        ("up2", (128, 64), 2, 3, up, true),
        ("head", (64, 1), 1, 7, padded(3), false),
    ];
    table
        .into_iter()
        .map(|(name, channels, scale, kernel, opts, transposed)| {
            layer(
                net,
                name.into(),
                channels,
                size / scale,
                kernel,
                opts,
                transposed,
            )
            .with_depth(depth.map(|d| d / scale))
        })
        .collect()
}

/// The basic PatchGAN (n_layers 3) on pix2pix's two-channel input.
pub fn patchgan() -> Vec<ConvLayer> {
    patchgan_at("patchgan", 2, 256, None)
}

/// The basic PatchGAN as CycleGAN's discriminator on BraTS's 240x240 slices (one channel):
/// rows of 120, 60, 30, 29 and 28 positions.
pub fn patchgan_240() -> Vec<ConvLayer> {
    patchgan_at("patchgan_240", 1, 240, None)
}

/// The volumetric CycleGAN's 3D PatchGAN (4x4x4 kernels) on the 128x128x64 patch.
pub fn patchgan3d() -> Vec<ConvLayer> {
    patchgan_at("patchgan3d", 1, 128, Some(64))
}

/// The PatchGAN's layers on an image of `size` (and `depth`, for a volume): three stride-2
/// convs, then two at stride 1 that each take one position off every side.
fn patchgan_at(
    net: &'static str,
    c_in: usize,
    size: usize,
    depth: Option<usize>,
) -> Vec<ConvLayer> {
    let (s2, s1) = (ConvOptions::new(2, 1), ConvOptions::new(1, 1));
    // Name, channels, the input's side as the image's divided by this, less that, options.
    let table = [
        ("c1", (c_in, 64), 1, 0, s2),
        ("c2", (64, 128), 2, 0, s2),
        ("c3", (128, 256), 4, 0, s2),
        ("c4", (256, 512), 8, 0, s1),
        ("c5", (512, 1), 8, 1, s1),
    ];
    table
        .into_iter()
        .map(|(name, channels, divided, less, opts)| {
            let side = |n: usize| n / divided - less;
            layer(net, name.into(), channels, side(size), 4, opts, false)
                .with_depth(depth.map(side))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In the ResNet generators and the PatchGANs, 2D and 3D, each layer takes what the one
    /// before gives (channels and spatial size), so the tables describe a network.
    #[test]
    fn layer_tables_chain() {
        for net in [
            resnet_9blocks(),
            resnet_9blocks_240(),
            resnet3d_9blocks(),
            patchgan(),
            patchgan_240(),
            patchgan3d(),
        ] {
            // A transposed conv's geometry is its mirror conv's: input and output swap.
            let ends = |l: &ConvLayer| {
                let g = l.geometry(2);
                if l.transposed {
                    ((g.output, g.c_out), (g.input, g.c_in))
                } else {
                    ((g.input, g.c_in), (g.output, g.c_out))
                }
            };
            for pair in net.windows(2) {
                assert_eq!(
                    ends(&pair[0]).1,
                    ends(&pair[1]).0,
                    "{} {} -> {}",
                    pair[0].net,
                    pair[0].name,
                    pair[1].name
                );
            }
        }
        assert_eq!(resnet3d_9blocks()[3].geometry(1).input, [16, 32, 32]);
        assert_eq!(patchgan3d()[4].geometry(1).output, [6, 14, 14]);
        assert_eq!(patchgan_240()[3].geometry(1).output, [1, 29, 29]);
    }
}

//! The convolution layers of the reference networks at 256x256, batch 1, one input and one
//! output channel (MRI), ngf = ndf = 64: the shapes every conv benchmark runs on; and
//! CycleGAN's networks at 240x240, the size it trains at on BraTS slices.

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
    pub kernel: usize,
    pub opts: ConvOptions,
    pub transposed: bool,
}

impl ConvLayer {
    /// The conv geometry whose three primitives the layer uses.
    pub fn geometry(&self, batch: usize) -> ConvGeometry {
        let x = Shape::new(&[batch, self.c_in, self.size, self.size]);
        if self.transposed {
            let w = Shape::new(&[self.c_in, self.c_out, self.kernel, self.kernel]);
            ConvGeometry::conv_transpose("bench", &x, &w, self.opts).expect("valid layer")
        } else {
            let w = Shape::new(&[self.c_out, self.c_in, self.kernel, self.kernel]);
            ConvGeometry::conv("bench", &x, &w, self.opts).expect("valid layer")
        }
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
    resnet_9blocks_at("resnet_9blocks", 256)
}

/// resnet_9blocks on BraTS's 240x240 slices, which `mrgan train` pads to the smallest size
/// the generator takes (a multiple of 4: 240 itself). Its rows of 120 and 60 positions are
/// no multiples of the GPU kernels' 16-deep K tiles, unlike those at 256x256.
pub fn resnet_9blocks_240() -> Vec<ConvLayer> {
    resnet_9blocks_at("resnet_9blocks_240", 240)
}

fn resnet_9blocks_at(net: &'static str, size: usize) -> Vec<ConvLayer> {
    let up = ConvOptions::new(2, 1).with_output_padding(1);
    let reflect = |p| ConvOptions::new(1, p).with_pad_mode(PadMode::Reflect);
    vec![
        layer(net, "stem".into(), (1, 64), size, 7, reflect(3), false),
        layer(
            net,
            "down1".into(),
            (64, 128),
            size,
            3,
            ConvOptions::new(2, 1),
            false,
        ),
        layer(
            net,
            "down2".into(),
            (128, 256),
            size / 2,
            3,
            ConvOptions::new(2, 1),
            false,
        ),
        layer(
            net,
            "block (x18)".into(),
            (256, 256),
            size / 4,
            3,
            reflect(1),
            false,
        ),
        layer(net, "up1".into(), (256, 128), size / 4, 3, up, true),
        layer(net, "up2".into(), (128, 64), size / 2, 3, up, true),
        layer(net, "head".into(), (64, 1), size, 7, reflect(3), false),
    ]
}

/// The basic PatchGAN (n_layers 3) on pix2pix's two-channel input.
pub fn patchgan() -> Vec<ConvLayer> {
    patchgan_at("patchgan", 2, 256)
}

/// The basic PatchGAN as CycleGAN's discriminator on BraTS's 240x240 slices (one channel):
/// rows of 120, 60, 30, 29 and 28 positions.
pub fn patchgan_240() -> Vec<ConvLayer> {
    patchgan_at("patchgan_240", 1, 240)
}

fn patchgan_at(net: &'static str, c_in: usize, size: usize) -> Vec<ConvLayer> {
    let (s2, s1) = (ConvOptions::new(2, 1), ConvOptions::new(1, 1));
    let c4 = size / 8;
    vec![
        layer(net, "c1".into(), (c_in, 64), size, 4, s2, false),
        layer(net, "c2".into(), (64, 128), size / 2, 4, s2, false),
        layer(net, "c3".into(), (128, 256), size / 4, 4, s2, false),
        layer(net, "c4".into(), (256, 512), c4, 4, s1, false),
        layer(net, "c5".into(), (512, 1), c4 - 1, 4, s1, false),
    ]
}

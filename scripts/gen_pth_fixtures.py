#!/usr/bin/env python3
"""Generates tests/fixtures/pth/: reference-format generator checkpoints and outputs.

- p2p_latest_net_G.pth (zip container) and p2p_legacy_net_G.pth (legacy container): a
  unet_256 generator (ngf 4, batch norm, dropout) after three pix2pix training steps, so its
  running statistics are not the defaults;
- cyclegan/latest_net_G_A.pth, latest_net_G_B.pth: resnet_9blocks (ngf 4, instance norm)
  after two CycleGAN steps;
- unet_input.nii.gz (256x256x2) with the generator's outputs per axial slice (the reference's
  test path: one slice per batch, dropout off) in both batch-norm modes:
  unet_out_batch.nii.gz (train-mode BN, the reference default) and unet_out_running.nii.gz
  (--eval); resnet_input.nii.gz (64x64x3) with resnet_AtoB.nii.gz / resnet_BtoA.nii.gz.
The generators come from the reference implementation's own `models/networks.py` when
REFERENCE_DIR points at a checkout of pytorch-CycleGAN-and-pix2pix (how the committed
fixtures were made), else from benches/torch_reference.py (built from the spec, same
state_dict keys). If target/release/mrgan exists, it also checks that `mrgan convert`
round trips to a .pth that loads into the network with load_state_dict.

    REFERENCE_DIR=/path/to/pytorch-CycleGAN-and-pix2pix python scripts/gen_pth_fixtures.py
    (needs torch, nibabel, numpy)
"""
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "benches"))
import torch_reference as ref  # noqa: E402

reference_dir = os.environ.get("REFERENCE_DIR")
if reference_dir:
    sys.path.insert(0, reference_dir)
    from models import networks  # noqa: E402  (the reference implementation)

    def unet_256(ngf):
        return networks.UnetGenerator(1, 1, 8, ngf, norm_layer=networks.get_norm_layer("batch"), use_dropout=True)

    def resnet_9blocks(ngf):
        return networks.ResnetGenerator(1, 1, ngf, norm_layer=networks.get_norm_layer("instance"), use_dropout=False, n_blocks=9)

    print("generators from the reference implementation in", reference_dir)
else:
    def unet_256(ngf):
        return ref.UnetGenerator(1, 1, 8, ngf, "batch", True)

    def resnet_9blocks(ngf):
        return ref.ResnetGenerator(1, 1, ngf, "instance", False, 9)

    print("generators from benches/torch_reference.py (set REFERENCE_DIR to use the reference code)")

out = os.path.join(here, "..", "tests", "fixtures", "pth")
os.makedirs(os.path.join(out, "cyclegan"), exist_ok=True)
torch.manual_seed(11)


def pattern(h, w, d, freq):
    i, j, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(d), indexing="ij")
    return (0.8 * np.sin(freq * i + 0.3 * k) * np.cos(1.7 * freq * j) + 0.1 * np.sin(0.05 * i * j / (h + w))).astype(np.float32)


def save_nii(path, arr):
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), path)


def per_slice(net, vol):
    """The reference test loop: each vol[:, :, k] as a 1x1xHxW batch."""
    outs = []
    with torch.no_grad():
        for k in range(vol.shape[2]):
            x = torch.from_numpy(np.ascontiguousarray(vol[:, :, k]))[None, None]
            outs.append(net(x)[0, 0].numpy())
    return np.stack(outs, axis=2)


def bn_train_dropout_off(net):
    net.eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.train()


# pix2pix generator
G = unet_256(4)
D = ref.NLayerDiscriminator(2, 4, 3, "batch")
ref.init_normal(G)
ref.init_normal(D)
og = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
for _ in range(3):
    ref.pix2pix_step(G, D, og, od, torch.rand(2, 1, 256, 256) * 2 - 1, torch.rand(2, 1, 256, 256) * 2 - 1)
torch.save(G.state_dict(), os.path.join(out, "p2p_latest_net_G.pth"))
torch.save(G.state_dict(), os.path.join(out, "p2p_legacy_net_G.pth"), _use_new_zipfile_serialization=False)
vol = pattern(256, 256, 2, 0.07)
save_nii(os.path.join(out, "unet_input.nii.gz"), vol)
state = {k: v.clone() for k, v in G.state_dict().items()}
bn_train_dropout_off(G)
save_nii(os.path.join(out, "unet_out_batch.nii.gz"), per_slice(G, vol))
G.load_state_dict(state)  # undo the in-memory running-stat updates
G.eval()
save_nii(os.path.join(out, "unet_out_running.nii.gz"), per_slice(G, vol))

# CycleGAN generators
GA = resnet_9blocks(4)
GB = resnet_9blocks(4)
DA = ref.NLayerDiscriminator(1, 4, 3, "instance")
DB = ref.NLayerDiscriminator(1, 4, 3, "instance")
for n in (GA, GB, DA, DB):
    ref.init_normal(n)
og = torch.optim.Adam(list(GA.parameters()) + list(GB.parameters()), lr=2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(list(DA.parameters()) + list(DB.parameters()), lr=2e-4, betas=(0.5, 0.999))
for _ in range(2):
    ref.cyclegan_step(GA, GB, DA, DB, og, od, torch.rand(1, 1, 64, 64) * 2 - 1, torch.rand(1, 1, 64, 64) * 2 - 1)
torch.save(GA.state_dict(), os.path.join(out, "cyclegan", "latest_net_G_A.pth"))
torch.save(GB.state_dict(), os.path.join(out, "cyclegan", "latest_net_G_B.pth"))
vol = pattern(64, 64, 3, 0.2)
save_nii(os.path.join(out, "resnet_input.nii.gz"), vol)
GA.eval()
GB.eval()
save_nii(os.path.join(out, "resnet_AtoB.nii.gz"), per_slice(GA, vol))
save_nii(os.path.join(out, "resnet_BtoA.nii.gz"), per_slice(GB, vol))

# mrgan convert: .pth -> safetensors -> .pth must load back into the network.
mrgan = os.path.join(here, "..", "target", "release", "mrgan")
if os.path.exists(mrgan):
    with tempfile.TemporaryDirectory() as tmp:
        for src, net in ((os.path.join(out, "p2p_latest_net_G.pth"), unet_256(4)),
                         (os.path.join(out, "cyclegan", "latest_net_G_A.pth"), resnet_9blocks(4))):
            st, back = os.path.join(tmp, "g.safetensors"), os.path.join(tmp, "g.pth")
            subprocess.run([mrgan, "convert", src, st], check=True, capture_output=True)
            subprocess.run([mrgan, "convert", st, back], check=True, capture_output=True)
            print(os.path.basename(src), "->", net.load_state_dict(torch.load(back, weights_only=True), strict=True))
            a, b = torch.load(src), torch.load(back)
            diff = [k for k in a if not k.endswith("num_batches_tracked") and not torch.equal(a[k].float(), b[k].float())]
            assert not diff, f"values changed in the round trip: {diff}"
else:
    print("target/release/mrgan not built: skipped the convert round trip")
print("wrote", sorted(os.listdir(out)), "with torch", torch.__version__)

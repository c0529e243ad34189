#!/usr/bin/env python3
"""The reference networks and training steps in PyTorch, written from
../shared/reference/pix2pix-cyclegan-reference.md (module nesting gives the same state_dict
keys as the reference implementation). Used by scripts/gen_model_fixtures.py for golden
values and, run directly, as the PyTorch side of `mrgan bench train`:

    python3 benches/torch_reference.py [--model pix2pix|cyclegan|cyclegan3d] [--size 256]
        [--patch 128,128,64] [--ngf 64] [--batch 1] [--iters 5] [--threads N] [--device cpu|cuda]

prints the median time of one training iteration (pix2pix: unet_256 + basic D, batch norm;
cyclegan: two resnet_9blocks + two basic Ds, instance norm; cyclegan3d: two 3D ResNet
generators + two 3D PatchGANs on x,y,z patches; no image pools; one channel) and of one
generator inference (G, resp. G_A), and on a GPU the memory peak (max_memory_allocated /
max_memory_reserved). The step's losses are read with .item(), and
inference ends with a synchronize, so GPU work is finished inside the timing.
"""
import argparse
import time

import torch
import torch.nn as nn


def norm_layer(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=True, track_running_stats=True)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


class UnetBlock(nn.Module):
    def __init__(self, outer, inner, input_nc=None, sub=None, outermost=False, innermost=False, norm="batch", dropout=False):
        super().__init__()
        self.outermost = outermost
        ub = norm == "instance"
        input_nc = input_nc or outer
        down = nn.Conv2d(input_nc, inner, 4, 2, 1, bias=ub)
        if outermost:
            layers = [down, sub, nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
        elif innermost:
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=ub), norm_layer(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), sub, nn.ReLU(True),
                      nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=ub), norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm="batch", dropout=False):
        super().__init__()
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, sub=block, norm=norm, dropout=dropout)
        block = UnetBlock(ngf * 4, ngf * 8, sub=block, norm=norm)
        block = UnetBlock(ngf * 2, ngf * 4, sub=block, norm=norm)
        block = UnetBlock(ngf, ngf * 2, sub=block, norm=norm)
        self.model = UnetBlock(output_nc, ngf, input_nc=input_nc, sub=block, outermost=True, norm=norm)

    def forward(self, x):
        return self.model(x)


class ResnetBlock(nn.Module):
    def __init__(self, dim, norm, dropout):
        super().__init__()
        ub = norm == "instance"
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=ub), norm_layer(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=ub), norm_layer(norm, dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf=64, norm="instance", dropout=False, n_blocks=9):
        super().__init__()
        ub = norm == "instance"
        m = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=ub), norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            m += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1, bias=ub), norm_layer(norm, ngf * mult * 2), nn.ReLU(True)]
        m += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            m += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1, bias=ub),
                  norm_layer(norm, ngf * mult // 2), nn.ReLU(True)]
        m += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf=64, n_layers=3, norm="batch"):
        super().__init__()
        ub = norm == "instance"
        seq = [nn.Conv2d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 2, 1, bias=ub), norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, 1, 1, bias=ub), norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class ResnetBlock3d(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReplicationPad3d(1), nn.Conv3d(dim, dim, 3), nn.InstanceNorm3d(dim, track_running_stats=True), nn.ReLU(True),
            nn.ReplicationPad3d(1), nn.Conv3d(dim, dim, 3), nn.InstanceNorm3d(dim, track_running_stats=True))

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator3d(nn.Module):
    """The 3D CycleGAN's generator (instance norm with running stats, replication padding)."""

    def __init__(self, input_nc, output_nc, ngf=64, n_blocks=9):
        super().__init__()
        norm = lambda c: nn.InstanceNorm3d(c, track_running_stats=True)  # noqa: E731
        m = [nn.ReplicationPad3d(3), nn.Conv3d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            m += [nn.Conv3d(ngf * mult, ngf * mult * 2, 3, 2, 1), norm(ngf * mult * 2), nn.ReLU(True)]
        m += [ResnetBlock3d(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            m += [nn.ConvTranspose3d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1), norm(ngf * mult // 2), nn.ReLU(True)]
        m += [nn.ReplicationPad3d(3), nn.Conv3d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*m)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator3d(nn.Module):
    def __init__(self, input_nc, ndf=64, n_layers=3):
        super().__init__()
        norm = lambda c: nn.InstanceNorm3d(c, track_running_stats=True)  # noqa: E731
        seq = [nn.Conv3d(input_nc, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv3d(ndf * prev, ndf * mult, 4, 2, 1), norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv3d(ndf * prev, ndf * mult, 4, 1, 1), norm(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv3d(ndf * mult, 1, 4, 1, 1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def init_normal(net, gain=0.02):
    for m in net.modules():
        name = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in name):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def set_requires_grad(net, on):
    for p in net.parameters():
        p.requires_grad = on


def gan_loss(pred, real, mode):
    target = torch.full_like(pred, 1.0 if real else 0.0)
    return nn.functional.binary_cross_entropy_with_logits(pred, target) if mode == "vanilla" else nn.functional.mse_loss(pred, target)


def pix2pix_step(G, D, opt_g, opt_d, real_a, real_b, lambda_l1=100.0, mode="vanilla"):
    """The reference's order; returns the losses and leaves each net's gradients in .grad."""
    fake_b = G(real_a)
    set_requires_grad(D, True)
    opt_d.zero_grad()
    d_fake = gan_loss(D(torch.cat([real_a, fake_b.detach()], 1)), False, mode)
    d_real = gan_loss(D(torch.cat([real_a, real_b], 1)), True, mode)
    (0.5 * (d_fake + d_real)).backward()
    opt_d.step()
    set_requires_grad(D, False)
    opt_g.zero_grad()
    g_gan = gan_loss(D(torch.cat([real_a, fake_b], 1)), True, mode)
    g_l1 = nn.functional.l1_loss(fake_b, real_b) * lambda_l1
    (g_gan + g_l1).backward()
    opt_g.step()
    set_requires_grad(D, True)
    return fake_b.detach(), {"G_GAN": g_gan.item(), "G_L1": g_l1.item(), "D_real": d_real.item(), "D_fake": d_fake.item()}


def cyclegan_step(GA, GB, DA, DB, opt_g, opt_d, real_a, real_b, la=10.0, lb=10.0, lidt=0.5, mode="lsgan"):
    """The reference's order with pools disabled."""
    fake_b = GA(real_a)
    rec_a = GB(fake_b)
    fake_a = GB(real_b)
    rec_b = GA(fake_a)
    set_requires_grad(DA, False)
    set_requires_grad(DB, False)
    opt_g.zero_grad()
    l1 = nn.functional.l1_loss
    idt_a = GA(real_b)
    loss_idt_a = l1(idt_a, real_b) * lb * lidt
    idt_b = GB(real_a)
    loss_idt_b = l1(idt_b, real_a) * la * lidt
    g_a = gan_loss(DA(fake_b), True, mode)
    g_b = gan_loss(DB(fake_a), True, mode)
    cyc_a = l1(rec_a, real_a) * la
    cyc_b = l1(rec_b, real_b) * lb
    (g_a + g_b + cyc_a + cyc_b + loss_idt_a + loss_idt_b).backward()
    opt_g.step()
    set_requires_grad(DA, True)
    set_requires_grad(DB, True)
    opt_d.zero_grad()
    d_a = 0.5 * (gan_loss(DA(real_b), True, mode) + gan_loss(DA(fake_b.detach()), False, mode))
    d_a.backward()
    d_b = 0.5 * (gan_loss(DB(real_a), True, mode) + gan_loss(DB(fake_a.detach()), False, mode))
    d_b.backward()
    opt_d.step()
    return fake_b.detach(), {"D_A": d_a.item(), "G_A": g_a.item(), "cycle_A": cyc_a.item(), "idt_A": loss_idt_a.item(),
                             "D_B": d_b.item(), "G_B": g_b.item(), "cycle_B": cyc_b.item(), "idt_B": loss_idt_b.item()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="pix2pix", choices=["pix2pix", "cyclegan", "cyclegan3d"])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--patch", default="128,128,64", help="cyclegan3d: patch x,y,z")
    ap.add_argument("--ngf", type=int, default=64, help="cyclegan3d: ngf = ndf")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (PyTorch's defaults: cuDNN, TF32 convs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    if args.model == "pix2pix":
        gens = [UnetGenerator(1, 1, 8, 64, "batch", True)]
        discs = [NLayerDiscriminator(2, 64, 3, "batch")]
        step = lambda: pix2pix_step(gens[0], discs[0], opt_g, opt_d, a, b)  # noqa: E731
    elif args.model == "cyclegan":
        gens = [ResnetGenerator(1, 1, 64, "instance", False, 9) for _ in range(2)]
        discs = [NLayerDiscriminator(1, 64, 3, "instance") for _ in range(2)]
        step = lambda: cyclegan_step(*gens, *discs, opt_g, opt_d, a, b)  # noqa: E731
    else:
        gens = [ResnetGenerator3d(1, 1, args.ngf, 9) for _ in range(2)]
        discs = [NLayerDiscriminator3d(1, args.ngf, 3) for _ in range(2)]
        step = lambda: cyclegan_step(*gens, *discs, opt_g, opt_d, a, b)  # noqa: E731
    for net in gens + discs:
        init_normal(net)
        net.to(dev)
    params = lambda nets: [p for net in nets for p in net.parameters()]  # noqa: E731
    opt_g = torch.optim.Adam(params(gens), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(params(discs), lr=2e-4, betas=(0.5, 0.999))
    x, y, z = (int(v) for v in args.patch.split(","))
    shape = (args.batch, 1, z, y, x) if args.model == "cyclegan3d" else (args.batch, 1, args.size, args.size)
    a = (torch.rand(shape) * 2 - 1).to(dev)
    b = (torch.rand(shape) * 2 - 1).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    times = []
    for i in range(args.iters + 1):
        t = time.perf_counter()
        step()
        if i:
            times.append(time.perf_counter() - t)
    infer = []
    with torch.no_grad():
        for i in range(args.iters + 1):
            t = time.perf_counter()
            gens[0](a)
            sync()
            if i:
                infer.append(time.perf_counter() - t)
    times.sort()
    infer.sort()
    memory = ""
    if dev.type == "cuda":
        gib = 2.0 ** 30
        memory = (f", memory peak {torch.cuda.max_memory_allocated() / gib:.2f} GiB allocated / "
                  f"{torch.cuda.max_memory_reserved() / gib:.2f} GiB reserved")
    print(f"torch {torch.__version__} {args.device} threads {torch.get_num_threads()}: {args.model} iteration {times[len(times) // 2]:.3f} s, "
          f"generator inference {infer[len(infer) // 2]:.3f} s (median of {args.iters}){memory}")


if __name__ == "__main__":
    main()

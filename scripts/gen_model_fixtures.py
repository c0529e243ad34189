#!/usr/bin/env python3
"""Generates tests/fixtures/models.safetensors: whole-network golden state (llm.c style).

Tiny pix2pix (unet_128, ngf 4, batch norm, dropout off, basic D ndf 4, vanilla GAN,
lambda_L1 100) and tiny CycleGAN (resnet_6blocks, ngf 4, instance norm, basic D ndf 4,
LSGAN, pools disabled, lambdas 10/10/0.5), built by benches/torch_reference.py from the spec:
initial state_dicts, inputs, the first step's output, losses and every parameter gradient,
BatchNorm running statistics after the step, and the losses of 10 steps on the same batch.

    python scripts/gen_model_fixtures.py     (needs torch and safetensors)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benches"))
import torch_reference as ref  # noqa: E402

torch.manual_seed(2024)
tensors, cases = {}, []


def dump_state(prefix, net):
    for k, v in net.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        if "InstanceNorm" in type(dict(net.named_modules()).get(k.rsplit(".", 1)[0], None)).__name__:
            continue  # instance-norm running stats: unused in training mode, not loaded
        tensors[f"{prefix}.{k}"] = v.detach().clone().double()


def dump_running(prefix, net):
    for k, v in net.state_dict().items():
        if k.endswith("running_mean") or k.endswith("running_var"):
            tensors[f"{prefix}.{k}"] = v.detach().clone().double()


def dump_grads(prefix, net):
    for k, p in net.named_parameters():
        tensors[f"{prefix}.grad.{k}"] = p.grad.detach().clone().double()


def adam(*nets):
    params = [p for n in nets for p in n.parameters()]
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


# pix2pix
G = ref.UnetGenerator(1, 1, 7, 4, "batch", False)
D = ref.NLayerDiscriminator(2, 4, 3, "batch")
ref.init_normal(G)
ref.init_normal(D)
dump_state("p2p.G0", G)
dump_state("p2p.D0", D)
a = torch.rand(2, 1, 128, 128) * 2 - 1
b = torch.rand(2, 1, 128, 128) * 2 - 1
tensors["p2p.real_a"], tensors["p2p.real_b"] = a.double(), b.double()
opt_g, opt_d = adam(G), adam(D)
fake, losses = ref.pix2pix_step(G, D, opt_g, opt_d, a, b)
tensors["p2p.fake_b"] = fake.double()
dump_grads("p2p.G", G)
dump_grads("p2p.D", D)
dump_running("p2p.G1", G)
dump_running("p2p.D1", D)
traj = [list(losses.values())]
for _ in range(9):
    traj.append(list(ref.pix2pix_step(G, D, opt_g, opt_d, a, b)[1].values()))
tensors["p2p.trajectory"] = torch.tensor(traj, dtype=torch.float64)
cases.append({"name": "p2p", "losses": list(losses.keys())})

# CycleGAN
GA = ref.ResnetGenerator(1, 1, 4, "instance", False, 6)
GB = ref.ResnetGenerator(1, 1, 4, "instance", False, 6)
DA = ref.NLayerDiscriminator(1, 4, 3, "instance")
DB = ref.NLayerDiscriminator(1, 4, 3, "instance")
for n in (GA, GB, DA, DB):
    ref.init_normal(n)
for name, n in (("GA", GA), ("GB", GB), ("DA", DA), ("DB", DB)):
    dump_state(f"cyc.{name}0", n)
a = torch.rand(1, 1, 64, 64) * 2 - 1
b = torch.rand(1, 1, 64, 64) * 2 - 1
tensors["cyc.real_a"], tensors["cyc.real_b"] = a.double(), b.double()
opt_g, opt_d = adam(GA, GB), adam(DA, DB)
fake, losses = ref.cyclegan_step(GA, GB, DA, DB, opt_g, opt_d, a, b)
tensors["cyc.fake_b"] = fake.double()
for name, n in (("GA", GA), ("GB", GB), ("DA", DA), ("DB", DB)):
    dump_grads(f"cyc.{name}", n)
traj = [list(losses.values())]
for _ in range(9):
    traj.append(list(ref.cyclegan_step(GA, GB, DA, DB, opt_g, opt_d, a, b)[1].values()))
tensors["cyc.trajectory"] = torch.tensor(traj, dtype=torch.float64)
cases.append({"name": "cyc", "losses": list(losses.keys())})

# 3D CycleGAN (resnet3d_6blocks, ngf 4, instance norm 3D, replication padding; D with one
# stride-2 layer, the most a 16x16x8 patch admits), patch 16x16x8
GA = ref.ResnetGenerator3d(1, 1, 4, 6)
GB = ref.ResnetGenerator3d(1, 1, 4, 6)
DA = ref.NLayerDiscriminator3d(1, 4, 1)
DB = ref.NLayerDiscriminator3d(1, 4, 1)
for n in (GA, GB, DA, DB):
    ref.init_normal(n)
for name, n in (("GA", GA), ("GB", GB), ("DA", DA), ("DB", DB)):
    dump_state(f"cyc3d.{name}0", n)
a = torch.rand(1, 1, 8, 16, 16) * 2 - 1
b = torch.rand(1, 1, 8, 16, 16) * 2 - 1
tensors["cyc3d.real_a"], tensors["cyc3d.real_b"] = a.double(), b.double()
opt_g, opt_d = adam(GA, GB), adam(DA, DB)
fake, losses = ref.cyclegan_step(GA, GB, DA, DB, opt_g, opt_d, a, b)
tensors["cyc3d.fake_b"] = fake.double()
for name, n in (("GA", GA), ("GB", GB), ("DA", DA), ("DB", DB)):
    dump_grads(f"cyc3d.{name}", n)
traj = [list(losses.values())]
for _ in range(4):
    traj.append(list(ref.cyclegan_step(GA, GB, DA, DB, opt_g, opt_d, a, b)[1].values()))
tensors["cyc3d.trajectory"] = torch.tensor(traj, dtype=torch.float64)
cases.append({"name": "cyc3d", "losses": list(losses.keys())})

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "models.safetensors")
save_file({k: v.contiguous() for k, v in tensors.items()}, out,
          metadata={"torch_version": torch.__version__, "cases": json.dumps(cases)})
print(f"wrote {len(tensors)} tensors to {os.path.normpath(out)} ({os.path.getsize(out)} bytes) with torch {torch.__version__}")

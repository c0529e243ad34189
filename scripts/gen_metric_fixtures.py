#!/usr/bin/env python3
"""Generates tests/fixtures/metrics.safetensors: scikit-image PSNR / SSIM on random images.

Cases: 2D and 3D, uniform (7 and 5 wide) and Gaussian windows, sample and population
covariance, several data ranges. Arrays are stored float64 in C order (the Rust test reverses
the shape to list the fastest axis first). The scikit-image version goes into the metadata
key `torch_version` (the fixture loader's version field).

    pip install scikit-image safetensors numpy torch
    python scripts/gen_metric_fixtures.py
"""
import json
import os

import numpy as np
import skimage
import torch
from safetensors.torch import save_file
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

rng = np.random.default_rng(7)
tensors, cases = {}, []


def case(name, x, y, data_range, gaussian=False, win_size=7, sample_covariance=True):
    kwargs = dict(data_range=data_range, gaussian_weights=gaussian, use_sample_covariance=sample_covariance)
    if not gaussian:
        kwargs["win_size"] = win_size
    s = structural_similarity(x, y, **kwargs)
    p = peak_signal_noise_ratio(x, y, data_range=data_range)
    tensors[f"{name}.x"] = torch.from_numpy(np.array(x, copy=True))
    tensors[f"{name}.y"] = torch.from_numpy(np.array(y, copy=True))
    tensors[f"{name}.ssim"] = torch.tensor([s], dtype=torch.float64)
    tensors[f"{name}.psnr"] = torch.tensor([p], dtype=torch.float64)
    cases.append({"name": name, "data_range": data_range, "window": "gaussian" if gaussian else "uniform",
                  "win_size": win_size, "sample_covariance": sample_covariance})


def smooth_pair(shape, noise):
    x = rng.random(shape)
    for axis in range(len(shape)):
        x = (x + np.roll(x, 1, axis) + np.roll(x, -1, axis)) / 3.0
    y = x + noise * rng.standard_normal(shape)
    return x, y


x, y = smooth_pair((23, 19), 0.05)
case("img2d_box7", x, y, 1.0)
case("img2d_box5_pop", x, y, 1.0, win_size=5, sample_covariance=False)
case("img2d_gauss", x, y, 1.0, gaussian=True)
x, y = smooth_pair((31, 27), 0.2)
case("img2d_range3", 3.0 * x - 1.0, 3.0 * y - 1.0, 3.0)
x, y = smooth_pair((12, 13, 15), 0.1)
case("vol3d_box7", x, y, 1.0)
case("vol3d_gauss", x, y, 1.0, gaussian=True)
case("vol3d_gauss_pop", x, y, 2.0, gaussian=True, sample_covariance=False)

out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "metrics.safetensors")
save_file(tensors, out, metadata={"torch_version": f"scikit-image {skimage.__version__}", "cases": json.dumps(cases)})
print(f"wrote {len(cases)} cases to {os.path.normpath(out)} with scikit-image {skimage.__version__}")

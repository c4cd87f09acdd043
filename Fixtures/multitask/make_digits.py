#!/usr/bin/env python3
"""Exports scikit-learn's bundled `digits` set (no download) to Fixtures/multitask/digits.safetensors.

The set is the test part of the UCI "Optical Recognition of Handwritten Digits" data (E. Alpaydin,
C. Kaynak, 1998; CC BY 4.0) as scikit-learn ships it inside its package: 1797 images of 8×8
pixels, each pixel a count 0–16 of set pixels in a 4×4 block of a 32×32 bitmap, and labels 0–9.

Written as safetensors (numpy + safetensors, no torch):
  images  U8 [1797, 8, 8]   the pixel counts, row-major, in scikit-learn's order
  labels  U8 [1797]         the digits
  __metadata__: source, sklearn version, count, sha256 of images and labels

Everything else of the multi-task benchmark (tasks, splits, heads, models) is built from this file
by benchmark-tool and merge-cli (Benchmarks/multitask.sh).

Usage: python Fixtures/multitask/make_digits.py   (needs numpy, safetensors, scikit-learn)
"""
import hashlib
import os

import numpy as np
import sklearn
from safetensors.numpy import save_file
from sklearn.datasets import load_digits


def main():
    digits = load_digits()
    images = digits.images.astype(np.float64)
    assert images.shape == (1797, 8, 8)
    assert images.min() == 0 and images.max() == 16 and np.all(images == np.round(images))
    images = images.astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    assert labels.shape == (1797,) and set(labels.tolist()) == set(range(10))
    metadata = {
        "source": "sklearn.datasets.load_digits (UCI optdigits, CC BY 4.0)",
        "sklearn_version": sklearn.__version__,
        "count": str(len(labels)),
        "images_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
        "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits.safetensors")
    save_file({"images": np.ascontiguousarray(images), "labels": labels}, out, metadata=metadata)
    print(f"wrote {out}: {len(labels)} images, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()

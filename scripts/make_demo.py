"""Build the demo set shipped in demo/digits from scikit-learn's bundled digits.

Real, labelled, offline: scikit-learn ships the UCI handwritten digits (1,797
8x8 images, 10 classes) inside the package. Each image becomes one pooled
(64,) float32 "embedding" <id>.npy, and labels.csv maps id -> digit (the
workflow ignores non-.npy files, so the labels can live beside the data).

    python scripts/make_demo.py [OUT_DIR]
"""

import csv
import os
import sys

import numpy as np


def make_demo(out_dir):
    from sklearn.datasets import load_digits

    digits = load_digits()
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for i, (image, label) in enumerate(zip(digits.data, digits.target)):
        clip_id = f"digit{i:04d}"
        np.save(os.path.join(out_dir, f"{clip_id}.npy"), (image / 16.0).astype(np.float32))
        rows.append((clip_id, int(label)))
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "digit"])
        writer.writerows(rows)
    return len(rows)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "demo/digits"
    print(f"wrote {make_demo(out)} files to {out}")

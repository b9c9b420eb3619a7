"""The floor of the generator metrics: real training images scored against the real held-out images.

    python benchmarks/real_vs_real.py [--n 2000]
Same classifier features, 64 px area-downsampled images and k = 3 as `lwgen eval`; prints and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lwgen.data import ImageTable, downsample
from lwgen.evaluation import Classifier
from lwgen.evaluation.metrics import fid, kid, precision_recall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("data/emoji"))
    p.add_argument("--classifier", type=Path, default=Path("checkpoints/classifier"))
    p.add_argument("--n", type=int, default=2000, help="training images drawn (seed 0)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/real_vs_real.json"))
    args = p.parse_args()
    clf = Classifier.from_checkpoint(args.classifier)
    train = ImageTable.load(args.data, [], size=256, split="train", progress=False)
    val = ImageTable.load(args.data, [], size=256, split="val", progress=False)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:args.n]
    real_train = clf.embed(downsample(train.images[pick], 4))[0]
    real_val = clf.embed(downsample(val.images, 4))[0]
    k_mean, k_std = kid(real_val, real_train, subset_size=min(len(real_val), len(real_train)))
    prec, rec = precision_recall(real_val, real_train[:len(real_val)], k=3)  # equal sets, as lwgen eval
    res = {"fid": fid(real_val, real_train), "kid": k_mean, "kid_std": k_std, "precision": prec, "recall": rec,
           "n_train": len(real_train), "n_val": len(real_val), "date": time.strftime("%Y-%m-%d")}
    for key, value in res.items():
        print(f"{key:<10} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Score a generator (FID, KID, class accuracy, precision/recall), an up-scaler (PSNR/SSIM vs bicubic), an
autoencoder (reconstruction error, and the FID floor it sets for latent diffusion) or the classifier itself."""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checkpoint import CheckpointError, read_tensors, write_tensors
from ..data import DataError, ImageTable, downsample
from ..data.cache import CACHE_DIR
from ..pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_GUIDANCE_INTERVAL,
    DEFAULT_GUIDANCE_PARALLEL,
    AutoencoderModel,
    DiffusionModel,
    UpscaleModel,
)
from ..precision import autocast
from ..record import CheckpointRecord
from .classifier import Classifier
from .conditions import ROWS, build, per_value_top1, real_steering, row_values, steering
from .metrics import beats_majority, fid, kid, precision_recall, psnr, quantize, ssim, topk_accuracy


def _some(values: list[str], limit: int = 8) -> str:
    """'a, b, c' (the first `limit`, then how many more)."""
    shown = ", ".join(values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def vocabulary_mismatch(generator: dict[str, list[str]], classifier: dict[str, list[str]]) -> str | None:
    """Why a classifier cannot score a generator's samples: no attribute in common, or values of a shared attribute
    that the classifier never learnt; None when it can (attributes only one side has are left unscored)."""
    shared = [a for a in generator if a in classifier]
    if not shared:
        return (f"no attribute in common (the generator's: {_some(list(generator))}; the classifier's: "
                f"{_some(list(classifier))})")
    for a in shared:
        known = set(classifier[a])
        missing = [v for v in generator[a] if v not in known]
        if missing:
            return (f"attribute '{a}': the generator's values {_some(missing)} are not among the classifier's "
                    f"{len(classifier[a])} ({_some(list(classifier[a]))})")
    return None


def columns_mismatch(classifier: dict[str, list[str]], table: ImageTable) -> str | None:
    """Why a classifier cannot score a data folder: none of its attributes is a column of the CSV; else None."""
    columns = [str(c) for c in table.extra.columns]
    if any(a in columns for a in classifier):
        return None
    return (f"{table.root}: the CSV has none of the classifier's attributes ({_some(list(classifier))}); its columns "
            f"are {_some(columns)}")


def generator_labels(model: DiffusionModel, values: list[dict[str, str]]) -> tuple[torch.Tensor, dict[str, int]]:
    """Labels (n, A) via model.encode; values the model does not know stay free (counted per attribute)."""
    dropped = {a: 0 for a in model.attributes}
    labels = []
    for row in values:
        known = {}
        for a in model.attributes:
            if a in row and row[a] in model.vocab[a]:
                known[a] = row[a]
            else:
                dropped[a] += 1
        labels.append(model.encode(known))
    return torch.stack(labels), {a: c for a, c in dropped.items() if c}


def classifier_targets(classifier: Classifier, values: list[dict[str, str]], conditioned: set[str]) -> torch.Tensor:
    """Classifier label (n, A) of each row; -1 where the generator was not conditioned on that value."""
    out = torch.full((len(values), len(classifier.attributes)), -1, dtype=torch.long)
    for i, row in enumerate(values):
        for j, a in enumerate(classifier.attributes):
            if a in conditioned and row.get(a) in classifier.vocab[a]:
                out[i, j] = classifier.vocab[a].index(row[a])
    return out


def table_targets(classifier: Classifier, table: ImageTable) -> torch.Tensor:
    """Classifier label (n, A) of every row of `table`; -1 where the classifier never saw the row's value."""
    return classifier_targets(classifier, row_values(table, list(range(len(table))), classifier.attributes),
                              set(classifier.attributes))


def at_resolution(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 images brought to side x side px by area downsampling (an integer factor), as the trainers do."""
    have = images.shape[-1]
    if have == side:
        return images
    if have < side or have % side:
        raise DataError(f"real images are {have} px and cannot be area-downsampled to {side} px "
                        f"(load them at a multiple of {side}, e.g. 256)")
    return downsample(images, have // side)


def fingerprint(*tensors: torch.Tensor) -> str:
    """Short SHA-1 of tensor contents (used as a cache key)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def real_embeddings(classifier: Classifier, images: torch.Tensor,
                    cache_dir: Path | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Classifier features and logits of real uint8 images, cached as safetensors under cache_dir when given."""
    path = None
    if cache_dir is not None:
        state = [v.float() for v in classifier.state_dict().values() if v.is_floating_point()]
        state += [p for _, p in classifier.hierarchy.values()]  # the scores depend on it too
        path = Path(cache_dir) / f"eval-real-{fingerprint(images, *state)}.safetensors"
        if path.is_file():
            try:
                tensors, _ = read_tensors(path)
                return tensors["features"], {a: tensors[f"logits.{a}"] for a in classifier.attributes}
            except (CheckpointError, KeyError):
                pass  # unreadable or stale: recompute and overwrite
    feats, logits = classifier.embed(images)
    if path is not None:
        try:
            write_tensors(path, {"features": feats, **{f"logits.{a}": v for a, v in logits.items()}})
        except OSError:
            pass  # a read-only data folder only costs the cache
    return feats, logits


def _accuracies(classifier: Classifier, logits: dict[str, torch.Tensor], targets: torch.Tensor,
                prefix: str = "") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for j, a in enumerate(classifier.attributes):
        ks = (1, 5) if len(classifier.vocab[a]) > 5 else (1,)
        for k in ks:
            value = topk_accuracy(logits[a], targets[:, j], k)
            out[f"{prefix}{a}_top{k}"] = None if value != value else round(value, 4)  # nan -> None (not conditioned)
    return out


# A classifier judges an attribute when, on real held-out images, it beats always guessing the most common value
# by at least this share of the rest (emoji: group 79 % top-1 against a 57 % majority passes at 74 %).


def weak_judge(classifier: Classifier, logits: dict[str, torch.Tensor], targets: torch.Tensor) -> list[str]:
    """One warning per attribute the classifier cannot judge: its top-1 on the real images does not beat the
    majority guess (`beats_majority`), so the samples' scores of that attribute say little."""
    out = []
    for j, a in enumerate(classifier.attributes):
        known = targets[:, j][targets[:, j] >= 0]
        real = topk_accuracy(logits[a], targets[:, j], 1)
        if not len(known) or real != real:
            continue
        majority = float(torch.bincount(known).max()) / len(known)
        if not beats_majority(real, majority):
            out.append(f"the classifier is too weak to judge {a!r}: it gets {real * 100:.0f} % of the real held-out "
                       f"images right, against {majority * 100:.0f} % for always guessing the most common value, "
                       f"so the {a} scores of the samples say little; train it longer (lwgen eval train-classifier "
                       "--minutes)")
    return out


@torch.no_grad()
def evaluate_generator(model: DiffusionModel, classifier: Classifier, real_table: ImageTable, n: int = 2000,
                       steps: int = 20, sampler: str = "dpmpp", guidance: float = DEFAULT_GUIDANCE, batch: int = 64,
                       seed: int = 0, progress: bool = True, bf16: bool = True, cache: bool = True, k: int = 3,
                       condition: str = ROWS, prompt_column: str | None = None, read_prompt: bool = True,
                       interval: tuple[float, float] | None = DEFAULT_GUIDANCE_INTERVAL,
                       parallel: float = DEFAULT_GUIDANCE_PARALLEL) -> dict[str, Any]:
    """Generate n images and compare them with the real (val) images.

    `condition` says what the generator is given: "rows" the attributes of real rows, the name of one attribute
    each of its values alone (the others "any"; the same seeds for every value, so `steering` can tell the
    condition's share from the seed's), or "text" the text of real rows alone (held-out rows: words the
    generator never saw with those images), with the attribute values the generator's prompt reader is sure of
    when `read_prompt`.
    """
    classifier.eval()
    r = model.resolution
    real = at_resolution(real_table.images, r)
    real_feats, real_logits = real_embeddings(classifier, real, real_table.root / CACHE_DIR if cache else None)
    real_targets = table_targets(classifier, real_table)
    text_column = prompt_column or CheckpointRecord.of(model).text_column or "text"
    cond = build(condition, real_table, model.vocab, classifier.attributes, n, seed, text_column)
    n = len(cond.values)
    labels, dropped = generator_labels(model, cond.given)
    text = None
    if cond.prompts:
        if not model.takes_text:
            raise ValueError("--condition text needs a generator trained with text")
        from ..text import encode

        text = encode(cond.prompts)
        reader = model.prompt_reader if read_prompt else None
        if reader is not None:
            labels = reader.fill(labels, model.attributes, text)
        read_prompt = reader is not None
    targets = classifier_targets(classifier, cond.values, cond.scored)
    for j, a in enumerate(classifier.attributes):
        if a in model.attributes and cond.mode != "text":  # values the generator did not know were left free
            targets[labels[:, model.attributes.index(a)] < 0, j] = -1
    feats, logits, seconds = [], {a: [] for a in classifier.attributes}, 0.0
    with tqdm(total=n, desc=f"generate {r}px ({cond.mode})", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch):
            lab = labels[start:start + batch]
            t0 = time.perf_counter()
            images = model.generate(model.condition(lab, None if text is None else text[start:start + batch]),
                                    seeds=cond.seeds[start:start + len(lab)], steps=steps, sampler=sampler,
                                    guidance=guidance, bf16=bf16, interval=interval, parallel=parallel)
            seconds += time.perf_counter() - t0
            f, lg = classifier.embed(quantize(images))
            feats.append(f)
            for a in classifier.attributes:
                logits[a].append(lg[a])
            bar.update(len(lab))
    fake_feats = torch.cat(feats)
    fake_logits = {a: torch.cat(v) for a, v in logits.items()}
    kid_mean, kid_std = kid(real_feats, fake_feats, seed=seed)
    m = min(len(real_feats), len(fake_feats))
    g = torch.Generator().manual_seed(seed)
    prec, rec = precision_recall(real_feats[torch.randperm(len(real_feats), generator=g)[:m]],
                                 fake_feats[torch.randperm(len(fake_feats), generator=g)[:m]], k)
    result: dict[str, Any] = {
        "condition": cond.mode,
        **({"prompt_column": text_column, "read_prompt": read_prompt} if cond.prompts else {}),
        "fid": round(fid(real_feats, fake_feats), 4), "kid": round(kid_mean, 6), "kid_std": round(kid_std, 6),
        **_accuracies(classifier, fake_logits, targets),
        "precision": round(prec, 4), "recall": round(rec, 4), "images_per_s": round(n / max(seconds, 1e-9), 3),
        **_accuracies(classifier, real_logits, real_targets, prefix="real_"),
    }
    head = classifier.attributes[0]
    result[f"per_{head}"] = {
        name: {"sample_top1": acc, "real_top1": real_acc}
        for (name, acc), real_acc in zip(
            per_value_top1(fake_logits[head], targets[:, 0], classifier.vocab[head]).items(),
            per_value_top1(real_logits[head], real_targets[:, 0], classifier.vocab[head]).values())
        if acc is not None or real_acc is not None}
    if cond.value_ids and len(cond.value_names) > 1:
        ours = steering(fake_feats, cond.value_ids, cond.seeds)
        column = real_table.extra[cond.mode].astype(str).tolist() if cond.mode in real_table.extra else []
        theirs = real_steering(real_feats, column) if column else {}
        result.update({f"steering_{k}": round(v, 4) for k, v in ours.items() if k != "steering"})
        result["steering"] = round(ours["steering"], 4)
        if theirs:
            result["real_steering"] = round(theirs["steering"], 4)
            result["steering_ratio"] = round(ours["steering"] / theirs["steering"], 3) if theirs["steering"] else None
        result["values"] = len(cond.value_names)
    result.update({"n": n, "n_real": len(real_table), "resolution": r, "steps": steps, "sampler": sampler,
                   "guidance": guidance, "guidance_interval": list(interval) if interval else None,
                   "guidance_parallel": parallel, "seed": seed,
                   "pr_samples": m, "k": k})
    if dropped and cond.mode == ROWS:  # values of held-out rows that the generator never saw
        result["unconditioned"] = dropped
    result["warnings"] = weak_judge(classifier, real_logits, real_targets)
    return result


@torch.no_grad()
def evaluate_upscaler(upscaler: UpscaleModel, table: ImageTable, n: int | None = None, batch: int = 16,
                      seed: int = 0, bf16: bool = True, progress: bool = True) -> dict[str, Any]:
    """PSNR/SSIM (Y channel, `scale`-pixel border cropped) of up-scaled area-downsampled images vs bicubic."""
    s = upscaler.net.config.scale
    side = table.images.shape[-1]
    if side % s:
        raise DataError(f"images of {side} px cannot be area-downsampled by {s}")
    count = len(table) if n is None else min(n, len(table))
    pick = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    scores: dict[str, list[torch.Tensor]] = {k: [] for k in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")}
    seconds = 0.0
    with tqdm(total=count, desc=f"up-scale x{s}", unit="img", disable=not progress) as bar:
        for idx in pick.split(batch):
            hr_u8 = table.images[idx]
            lr = downsample(hr_u8, s).float() / 127.5 - 1
            hr = hr_u8.float() / 127.5 - 1
            t0 = time.perf_counter()
            sr = quantize(upscaler.upscale(lr, bf16=bf16, batch=batch))
            seconds += time.perf_counter() - t0
            bic = quantize(F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False))
            scores["psnr"].append(psnr(sr, hr, crop=s))
            scores["ssim"].append(ssim(sr, hr, crop=s))
            scores["psnr_bicubic"].append(psnr(bic, hr, crop=s))
            scores["ssim_bicubic"].append(ssim(bic, hr, crop=s))
            bar.update(len(idx))
    mean = {k: float(torch.cat(v).mean()) for k, v in scores.items()}
    return {"psnr": round(mean["psnr"], 4), "ssim": round(mean["ssim"], 5),
            "psnr_bicubic": round(mean["psnr_bicubic"], 4), "ssim_bicubic": round(mean["ssim_bicubic"], 5),
            "gain_db": round(mean["psnr"] - mean["psnr_bicubic"], 4),
            "ssim_gain": round(mean["ssim"] - mean["ssim_bicubic"], 5),
            "images_per_s": round(count / max(seconds, 1e-9), 3), "n": count, "scale": s,
            "resolution": side, "input_resolution": side // s}


@torch.no_grad()
def evaluate_autoencoder(autoencoder: AutoencoderModel, table: ImageTable, side: int,
                         classifier: Classifier | None = None, batch: int = 64, bf16: bool = True,
                         progress: bool = True, cache: bool = True, seed: int = 0) -> dict[str, Any]:
    """Reconstruct every image of `table` at `side` px: L1 (in [-1, 1]), PSNR and SSIM (Y channel) and, with a
    classifier, FID / KID of the reconstructions against the originals and the classifier's accuracy on both.

    A latent diffusion model decodes through this autoencoder, so its reconstruction FID is a floor for the
    generator's FID, and the accuracy drop from originals to reconstructions is what the latent costs.
    """
    real = at_resolution(table.images, side)
    autoencoder.eval()
    recon, seconds = [], 0.0
    with tqdm(total=len(real), desc=f"reconstruct {side}px", unit="img", disable=not progress) as bar:
        for chunk in real.split(batch):
            x = chunk.float() / 127.5 - 1
            t0 = time.perf_counter()
            with autocast(bf16):
                out = autoencoder(x)
            seconds += time.perf_counter() - t0
            recon.append(quantize(out.float().clamp(-1, 1)))
            bar.update(len(chunk))
    fake = torch.cat(recon)
    x = real.float() / 127.5 - 1
    result: dict[str, Any] = {
        "l1": round(float((fake - x).abs().mean()), 5), "psnr": round(float(psnr(fake, x).mean()), 4),
        "ssim": round(float(ssim(fake, x).mean()), 5), "images_per_s": round(len(real) / max(seconds, 1e-9), 3),
        "n": len(real), "resolution": side,
    }
    if classifier is not None:
        classifier.eval()
        real_feats, real_logits = real_embeddings(classifier, real, table.root / CACHE_DIR if cache else None)
        fake_feats, fake_logits = classifier.embed(fake)
        targets = table_targets(classifier, table)
        kid_mean, kid_std = kid(real_feats, fake_feats, seed=seed)
        result = {"fid": round(fid(real_feats, fake_feats), 4), "kid": round(kid_mean, 6),
                  "kid_std": round(kid_std, 6), **result, **_accuracies(classifier, fake_logits, targets),
                  **_accuracies(classifier, real_logits, targets, prefix="real_")}
    return result


@torch.no_grad()
def evaluate_classifier(classifier: Classifier, table: ImageTable) -> dict[str, Any]:
    """Top-1 (and top-5 for attributes of more than 5 values) of the classifier on the rows of `table`."""
    images = at_resolution(table.images, classifier.config.image_size)
    _, logits = classifier.embed(images)
    targets = table_targets(classifier, table)
    missing = (targets < 0).sum(0).tolist()
    unknown = {a: m for a, m in zip(classifier.attributes, missing) if m}
    result: dict[str, Any] = {**_accuracies(classifier, logits, targets), "n": len(table),
                              "resolution": classifier.config.image_size}
    if unknown:
        result["unknown_values"] = unknown  # rows whose value the classifier never saw: not scored
    return result

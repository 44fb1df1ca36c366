"""What the rehearsal of the paper profile runs: the sizes it shrinks and the Hydra overrides that say so.

``make rehearse`` (:mod:`pipelines.rehearse`) runs ``dvc exp run -S profile=paper`` plus the overrides of
:func:`overrides`, and nothing else is changed: every other key is the paper profile's (paper-scale
networks, MIMO-UNet+ in Table 1, the three training sets, the ablations on GoPro, bf16, FFTformer's
micro-batches, the T sweep, the cost profile's 720p size...). The overrides are of four kinds, and
:data:`OVERRIDABLE` lists every key they may touch (``tests/test_rehearse.py`` composes both and proves that
nothing else differs):

* sizes: step counts, the global batch and FFTformer's micro-batch, the training crops, the evaluation
  seeds (how many sampling seeds, not which), the training seeds of the ablation backbone (a count), the
  latency repeats, which backbones the latency table times (``cost.latency_backbones``: FFTformer's
  paper-scale 720p pass alone takes minutes on 2 CPU cores; the counts still cover every backbone), and the
  size of the embedded synthetic set (which the paper profile renders but never uses);
* layout: data-loading processes, and ``train.activation_checkpointing`` (the same loss, recomputed activations: README "Precision, memory and the
  global batch"), which the rehearsal turns ON for every backbone so that its code path runs;
* where the data comes from: each dataset's ``urls`` (the miniature archives on 127.0.0.1), the pair counts
  those archives hold (``expected_pairs``), ``manual: false`` for RealBlur (the official link is a sharing
  page, so real users download it by hand and pass ``--archive``; here it is served like GoPro and HIDE) and
  ``fetch.checksums_file`` (the miniature archives' own sha256 table; ``pipelines/checksums.yaml`` is not
  touched);
* nothing else.

The image sizes are those of the miniature archives (:data:`Sizes.splits`): small training and test pairs,
except ONE full-resolution 720 x 1280 HIDE test pair, which every GoPro-trained backbone restores through its
padding / tiling path, as on the real HIDE set (the ablation models are scored on GoPro only, as in the paper:
``ablations.test``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

FULL_RES = (720, 1280)  # GoPro / HIDE frames, (H, W)

# keys (dotted, '*' = any one name) whose value the rehearsal may change; everything else is the paper profile's
OVERRIDABLE = (
    "train.steps", "backbone_train.*.steps", "train.batch_size", "train.micro_batch", "backbone_train.*.micro_batch",
    "data.crop_size", "backbone_train.*.crop_size", "evaluate.eval_seeds", "evaluate.max_images", "backbone_train.mimo_unet.seeds",
    "cost.sizes", "cost.warmup", "cost.repeats", "cost.latency_backbones",
    "synth.n_train", "synth.n_test", "synth.crop_size", "synth.subframes", "synth.dead_leaves.scenes",
    "synth.dead_leaves.size", "synth.dead_leaves.shapes",
    "train.checkpoint_every", "train.val_every", "train.log_every", "data.num_workers", "train.threads",
    "train.activation_checkpointing", "backbone_train.*.activation_checkpointing",
    "fetch.datasets.*.urls", "fetch.datasets.*.url", "fetch.datasets.*.expected_pairs", "fetch.datasets.*.manual",
    "fetch.checksums_file",
)
DATASETS = ("gopro", "hide", "realblur_j", "realblur_r")  # fetch.datasets of the paper profile


@dataclass(frozen=True)
class Sizes:
    """The sizes of one rehearsal (the defaults are what ``make rehearse`` runs)."""

    steps: int = 1  # every stage of every backbone (train.steps.*, backbone_train.<b>.steps.*)
    batch_size: int = 2  # the global batch (paper: 20)
    fftformer_micro_batch: int = 1  # paper: 4 (5 micro-batches of the 20); here 2 micro-batches of the 2
    crop: int = 32  # data.crop_size (paper: 256); a multiple of every backbone's pad multiple (32)
    # LoFormer-S needs 64: its 8x-downsampled features are reflect-padded to its 8 x 8 attention windows, which
    # needs more than 4 x 4 (as in the official code; the paper's crops are 256)
    loformer_crop: int = 64
    eval_seeds: tuple[int, ...] = (2023,)  # the first of the paper's [2023, 0, 1, 2, 3]
    ablation_seeds: tuple[int, ...] = (0,)  # the ablation backbone's training seeds (paper: [0, 1, 2])
    # the profile stage times one backbone (at the paper profile's 256 x 256 and 720 x 1280): MIMO-UNet, the cheapest
    # at 720p; every backbone is still counted
    latency_backbones: tuple[str, ...] = ("mimo_unet",)
    cost_sizes: tuple[tuple[int, int], ...] | None = None  # None: the paper profile's sizes
    num_workers: int = 2  # data-loading processes (paper: 8, for a GPU node)
    # the miniature archives: {gopro|hide|realblur: {split: (pairs, (H, W))}} (pipelines/rehearsal/archives.py).
    # Training pairs: batch 2 + 1 held-out validation pair (validation runs at the training images' full size
    # after every stage, so they stay small, 72 x 96: not a multiple of 32, so padding runs there too)
    splits: dict = field(default_factory=lambda: {
        "gopro": {"train": (3, (72, 96)), "test": (1, (72, 96))},
        "hide": {"train": (1, (40, 64)), "test": (1, FULL_RES)},  # HIDE's training split is not fetched
        "realblur": {"train": (3, (72, 96)), "test": (1, (72, 96))},
    })


def _list(values) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def size_overrides(sizes: Sizes) -> list[str]:
    """The Hydra overrides (``dvc exp run -S``) of the sizes and layout keys."""
    s = sizes.steps
    out = [f"train.steps.stage1={s}", f"train.steps.stage2={s}", f"train.steps.stage3={s}",
           # the paper profile gives MIMO-UNet (the ablation backbone) its own schedule and seeds
           f"backbone_train.mimo_unet.steps.stage1={s}", f"backbone_train.mimo_unet.steps.stage2={s}",
           f"backbone_train.mimo_unet.steps.stage3={s}",
           f"backbone_train.mimo_unet.seeds={_list(sizes.ablation_seeds)}",
           f"train.batch_size={sizes.batch_size}",
           f"backbone_train.fftformer.micro_batch={sizes.fftformer_micro_batch}",
           f"data.crop_size={sizes.crop}", f"++backbone_train.loformer.crop_size={sizes.loformer_crop}",
           f"evaluate.eval_seeds={_list(sizes.eval_seeds)}",
           "cost.warmup=0", "cost.repeats=1", f"++cost.latency_backbones={_list(sizes.latency_backbones)}",
           f"data.num_workers={sizes.num_workers}",
           "train.activation_checkpointing=true",
           # the embedded synthetic set: the paper profile trains and tests on none of it, but its DAG renders it
           # (2,000 training crops: ~1 min here); the smoke profile's sizes
           "synth.n_train=12", "synth.n_test=4", "synth.crop_size=64", "synth.subframes=9",
           "synth.dead_leaves.scenes=2", "synth.dead_leaves.size=192", "synth.dead_leaves.shapes=2000"]
    if sizes.cost_sizes is not None:
        out.append("cost.sizes=" + _list(_list(hw) for hw in sizes.cost_sizes))
    return out


def fetch_overrides(base_url: str, info: dict, checksums_file: str) -> list[str]:
    """Every dataset downloads its miniature archive from ``base_url`` (the 127.0.0.1 server) and expects the
    pairs that ``info`` (:func:`pipelines.rehearsal.archives.read_info`) says it holds."""
    out = []
    for name in DATASETS:
        entry = info["datasets"][name]
        url = f"{base_url.rstrip('/')}/{entry['archive']}"
        pairs = ",".join(f"{split}:{n}" for split, n in entry["expected_pairs"].items())
        out += [f"++fetch.datasets.{name}.urls=['{url}']", f"++fetch.datasets.{name}.url='{url}'",
                f"fetch.datasets.{name}.expected_pairs={{{pairs}}}", f"++fetch.datasets.{name}.manual=false"]
    out.append(f"++fetch.checksums_file='{checksums_file}'")  # ++: set it whether or not the config has it
    return out


def overrides(sizes: Sizes, base_url: str, info: dict, checksums_file: str) -> list[str]:
    """All Hydra overrides of one rehearsal, after ``profile=paper``."""
    return size_overrides(sizes) + fetch_overrides(base_url, info, checksums_file)


def overridden_key(key: str) -> bool:
    """Whether the dotted params ``key`` lies under one of :data:`OVERRIDABLE`."""
    parts = key.split(".")
    for pattern in OVERRIDABLE:
        wanted = pattern.split(".")
        if len(parts) >= len(wanted) and all(w in ("*", p) for w, p in zip(wanted, parts)):
            return True
    return False


def differing_keys(a, b, prefix: str = "") -> list[str]:
    """The dotted keys where two composed params differ (a key of one only counts as differing)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            out += differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


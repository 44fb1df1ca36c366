"""Parameters, MACs, FLOPs and (optionally) latency of every model: the work behind ``blurdm-bench profile``.

For every backbone of :data:`models.backbones.BACKBONES` in two variants, ``baseline`` (built without
prior fusion) and ``blurdm`` (fusion layers + the BlurDM prior: ``backbone(x, BlurDM(x))``), and for
the BlurDM module alone (Blur Encoder + both estimators, the whole reverse chain):

* ``params``; ``flops`` / ``macs`` / ``fft_flops`` from :func:`models.costs.count_costs` at
  1x3x256x256 on the ``meta`` device (complete: convolutions, linear layers, attention matmuls and
  FFTs counted as 5 N log2 N real FLOPs per complex transform, half for real transforms;
  ``macs = flops / 2``);
* ``thop_macs`` from :func:`models.costs.count_layer_macs` (conv/linear layers only), the way the
  published "GFLOPs" were obtained, compared with ``models/published_costs.yaml``;
* the overhead BlurDM adds per backbone (parameters, MACs, FLOPs, latency), beside the paper's
  claims (``overhead`` block of the paper YAML: ~4 GFLOPs = 4.16 GMACs, < 8 %, ~9 ms).

``--latency`` times full-image inference (:func:`models.inference.restore_full`: padding, LoFormer's
tiles) at every size of ``params.cost.sizes``: ``warmup`` untimed runs, then the median and IQR of
``repeats`` timed runs (``time.perf_counter`` on CPU; CUDA events + ``synchronize`` on a GPU). On a
GPU the same table is also timed on the fast path (``latency.fast``: prior and backbone replayed from a
CUDA graph per shape, :mod:`models.fast_inference`; ``--no-fast`` skips it) with the speed-up per row
and BlurDM's overhead on both paths.
Timings are measurements of this machine: nothing here is asserted in tests. They differ from run to
run, so ``--out FILE`` holds the counts only (the same bytes for the same commit and params) and the
timings go to the untracked ``<folder of FILE>/run_info/<name of FILE>`` (:mod:`pipelines.results.run_info`).
"""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from tqdm import tqdm

from models.backbones import BACKBONES
from models.costs import count_costs, count_layer_macs, count_params
from models.deblur_model import build_deblur_model
from models.fast_inference import fast_adapter, fast_prior
from models.inference import pick_device, restore_full, restore_tensor
from models.names import SIDES
from models.priors import build_prior
from pipelines.core.checkpoint_files import load_deblur_model
from pipelines.core.config import repo_root
from pipelines.core.errors import InvalidInputError

COST_INPUT_SHAPE = (1, 3, 256, 256)
PUBLISHED_COSTS = Path(__file__).resolve().parents[2] / "models" / "published_costs.yaml"
PAPER_YAML_NAME = "blurdm-neurips2025.yaml"
# our backbone name -> key in backbones_published (LoFormer: we build the S variant)
PUBLISHED_KEYS = {"loformer": "loformer_s"}

COUNTING_NOTES = {
    "flops": "torch.utils.flop_counter.FlopCounterMode (convolutions, linear layers, attention matmuls, "
             "batched matmuls) plus FFTs; one forward pass at batch 1 on the meta device",
    "fft": "5 N log2 N real FLOPs per complex transform of N points (radix-2 estimate), half of that for "
           "real-input / real-output transforms (rfft, irfft); reported as fft_flops, included in flops",
    "macs": "flops / 2 (including fft_flops / 2)",
    "thop_macs": "thop-style: forward hooks on nn.Conv*/nn.ConvTranspose*/nn.Linear only (misses attention "
                 "matmuls, FFTs and elementwise ops); this is how the published 'GFLOPs' were counted",
}


# ---------------------------------------------------------------------------------------------
# published numbers
# ---------------------------------------------------------------------------------------------
def _paper_yaml_candidates() -> list[Path]:
    root = repo_root()
    return [root / "reports" / "published" / PAPER_YAML_NAME, root.parent / "shared" / "paper" / PAPER_YAML_NAME]


def _shown(path: str | Path) -> str:
    """``path`` relative to the repository root (``../shared/...`` when beside it): no absolute path,
    which would differ between checkouts, goes into the tracked costs.json."""
    try:
        return Path(os.path.relpath(Path(path).resolve(), repo_root())).as_posix()
    except ValueError:  # another drive (Windows)
        return Path(path).name


def load_published_costs(published_costs: str | Path | None = None, paper_yaml: str | Path | None = None) -> dict:
    """``{"backbones": {...} | None, "overhead": {...} | None, "sources": {...}}``.

    Backbone costs come from ``models/published_costs.yaml`` (in the package); the overhead claims
    from the paper YAML (``reports/published/`` or the shared folder). A missing file gives ``None``
    and its reason, never a made-up number.
    """
    out: dict = {"backbones": None, "overhead": None, "sources": {}}
    costs_path = Path(published_costs) if published_costs else PUBLISHED_COSTS
    if costs_path.is_file():
        data = yaml.safe_load(costs_path.read_text()) or {}
        out["backbones"] = data.get("backbones_published")
        out["sources"]["backbones"] = _shown(costs_path)
    else:
        out["sources"]["backbones"] = f"not found: {_shown(costs_path)}"
    candidates = [Path(paper_yaml)] if paper_yaml else _paper_yaml_candidates()
    for path in candidates:
        if path.is_file():
            data = yaml.safe_load(path.read_text()) or {}
            out["overhead"] = data.get("overhead")
            if out["backbones"] is None:
                out["backbones"] = data.get("backbones_published")
                out["sources"]["backbones"] = _shown(path)
            out["sources"]["overhead"] = _shown(path)
            break
    else:
        out["sources"]["overhead"] = "not found: " + ", ".join(_shown(p) for p in candidates)
    return out


# ---------------------------------------------------------------------------------------------
# counting
# ---------------------------------------------------------------------------------------------
def variant_spec(backbone: str, variant: str, scale: str, T: int) -> dict:
    """The :mod:`models.deblur_model` spec of a profiled model: the baseline backbone (no fusion
    layers), or the backbone fed by the BlurDM prior (what evaluation of a stage-3 model runs)."""
    if variant == "baseline":
        return {"backbone": backbone, "scale": scale, "prior_mode": "none"}
    if variant == "blurdm":
        return {"backbone": backbone, "scale": scale, "prior_mode": "diffusion", "prior": "blurdm", "T": T}
    raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(SIDES)}")


def build_variant(backbone: str, variant: str, scale: str, T: int) -> nn.Module:
    return build_deblur_model(variant_spec(backbone, variant, scale, T))


def _cost_entry(module: nn.Module, x: torch.Tensor) -> dict:
    costs = count_costs(module, x, device="meta")
    return {
        "params": int(costs["params"]),
        "flops": int(costs["flops"]),
        "macs": float(costs["macs"]),
        "fft_flops": int(costs["fft_flops"]),
        "thop_macs": int(count_layer_macs(module, x, device="meta")),
    }


def _ratio(new: float, old: float) -> float | None:
    return None if not old else (new - old) / old


def count_all(backbones: list[str], scale: str, T: int, progress: bool = True) -> dict:
    """Costs of every backbone x variant and of the BlurDM module alone at 1x3x256x256."""
    x = torch.zeros(COST_INPUT_SHAPE, device="meta")
    jobs = [(name, variant) for name in backbones for variant in SIDES]
    results: dict = {"backbones": {}}
    with torch.device("meta"):
        prior = build_prior("blurdm", T, scale)
    module_entry = _cost_entry(prior, x)
    module_entry["components"] = {
        "blur_encoder": {"params": count_params(prior.encoder),
                         "macs": float(count_costs(prior.encoder, x, x, device="meta")["macs"])},
        "estimators": {"params": count_params(prior.estimators)},
    }
    module_entry["components"]["estimators"]["macs"] = module_entry["macs"] - module_entry["components"]["blur_encoder"]["macs"]
    results["blurdm_module"] = module_entry
    for name, variant in tqdm(jobs, desc=f"counting costs ({scale})", disable=not progress, unit="model"):
        with torch.device("meta"):  # no real weights: paper-scale models cost no memory
            model = build_variant(name, variant, scale, T)
        results["backbones"].setdefault(name, {})[variant] = _cost_entry(model, x)
    for name, entry in results["backbones"].items():
        base, with_prior = entry["baseline"], entry["blurdm"]
        entry["overhead"] = {
            "params": with_prior["params"] - base["params"],
            "macs": with_prior["macs"] - base["macs"],
            "params_ratio": _ratio(with_prior["params"], base["params"]),
            "macs_ratio": _ratio(with_prior["macs"], base["macs"]),
            "flops_ratio": _ratio(with_prior["flops"], base["flops"]),
            "thop_macs_ratio": _ratio(with_prior["thop_macs"], base["thop_macs"]),
            "module_macs_share": module_entry["macs"] / base["macs"] if base["macs"] else None,
        }
    return results


def prior_shares(backbones: list[str], T: int, progress: bool = True) -> dict:
    """The prior's share of the whole +BlurDM model (BlurDM module + fusion layers over the total), in
    params and in MACs at 1x3x256x256, at both scales, and tiny / paper (the cpu study keeps it within
    1.5x: a gain at tiny scale is then not bought with a relatively bigger prior)."""
    counts = {scale: count_all(backbones, scale, T, progress=progress)["backbones"] for scale in ("paper", "tiny")}
    out = {}
    for name in backbones:
        entry = {}
        for scale, per in counts.items():
            with_prior, overhead = per[name]["blurdm"], per[name]["overhead"]
            entry[scale] = {"params": overhead["params"] / with_prior["params"],
                            "macs": overhead["macs"] / with_prior["macs"]}
        entry["tiny_over_paper"] = {k: entry["tiny"][k] / entry["paper"][k] for k in ("params", "macs")}
        out[name] = entry
    return out


def compare_published(results: dict, published: dict | None, scale: str) -> None:
    """Add ``published`` (params_m, gmacs and our thop-style numbers) to each backbone entry."""
    for name, entry in results["backbones"].items():
        key = PUBLISHED_KEYS.get(name, name)
        pub = (published or {}).get(key)
        if pub is None:
            entry["published"] = None
            continue
        base = entry["baseline"]
        ours_params_m = base["params"] / 1e6
        ours_gmacs = base["thop_macs"] / 1e9
        entry["published"] = {
            "key": key,
            "params_m": pub.get("params_m"),
            "gmacs": pub.get("gmacs"),
            "ours_params_m": ours_params_m,
            "ours_thop_gmacs": ours_gmacs,
            "ours_complete_gmacs": base["macs"] / 1e9,
            "params_rel_diff": _ratio(ours_params_m, pub["params_m"]) if pub.get("params_m") else None,
            "gmacs_rel_diff": _ratio(ours_gmacs, pub["gmacs"]) if pub.get("gmacs") else None,
            "comparable": scale == "paper",
        }


# ---------------------------------------------------------------------------------------------
# latency
# ---------------------------------------------------------------------------------------------
def time_callable(fn, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Milliseconds of ``repeats`` calls of ``fn()`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(float(start.elapsed_time(end)))
    else:
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000.0)
    return times


def summarise_times(times_ms: list[float]) -> dict:
    q25, median, q75 = np.percentile(np.asarray(times_ms, dtype=np.float64), [25, 50, 75])
    return {"median_ms": float(median), "iqr_ms": float(q75 - q25), "q25_ms": float(q25), "q75_ms": float(q75),
            "times_ms": [float(t) for t in times_ms]}


def measure_latency(backbones: list[str], scale: str, T: int, sizes: list[tuple[int, int]], warmup: int,
                    repeats: int, device: torch.device, seed: int = 0, progress: bool = True) -> dict:
    """Median / IQR latency of full-image inference per backbone x variant x size, and of BlurDM alone."""
    torch.manual_seed(seed)
    jobs = [("blurdm_module", None, size) for size in sizes]
    jobs += [(name, variant, size) for name in backbones for variant in SIDES for size in sizes]
    rows = []
    cache: dict = {}
    for name, variant, (h, w) in tqdm(jobs, desc="timing", disable=not progress, unit="run"):
        key = (name, variant)
        if key not in cache:
            cache.clear()  # one model in memory at a time
            torch.manual_seed(seed)
            if name == "blurdm_module":
                cache[key] = build_prior("blurdm", T, scale).to(device).eval()
            else:
                cache[key] = build_variant(name, variant, scale, T).to(device).eval()
        model = cache[key]
        generator = torch.Generator().manual_seed(seed)
        x = torch.rand((1, 3, h, w), generator=generator).to(device)
        if name == "blurdm_module":
            # BE needs multiples of 4: time it on the largest such crop (the sizes used are multiples of 4)
            xin = x[..., : h - h % 4, : w - w % 4]

            def fn(m=model, xin=xin):
                return m(xin)
        else:
            def fn(m=model, x=x):
                return restore_tensor(m, x, generator=torch.Generator().manual_seed(seed))
        with torch.inference_mode():
            times = time_callable(fn, device, warmup, repeats)
        rows.append({"model": name, "variant": variant, "size": [h, w], **summarise_times(times)})
    medians = {(r["model"], r["variant"], tuple(r["size"])): r["median_ms"] for r in rows}
    overhead = []
    for name in backbones:
        for size in sizes:
            base = medians.get((name, "baseline", tuple(size)))
            with_prior = medians.get((name, "blurdm", tuple(size)))
            overhead.append({"model": name, "size": list(size), "baseline_ms": base, "blurdm_ms": with_prior,
                             "added_ms": with_prior - base, "latency_ratio": _ratio(with_prior, base)})
    return {
        "results": rows,
        "overhead": overhead,
        "warmup": warmup,
        "repeats": repeats,
        "timer": "cuda events + synchronize" if device.type == "cuda" else "time.perf_counter",
        "what": "full-image inference (models.inference.restore_tensor: reflect padding, LoFormer tiles) at "
                "batch 1 under torch.inference_mode; blurdm_module = BE + the whole reverse chain",
        **environment(device),
    }


def profile_model_file(path, sizes: list[tuple[int, int]], latency: bool, warmup: int, repeats: int,
                       device: torch.device, seed: int = 0) -> dict:
    """Parameters, MACs / FLOPs (at each of ``sizes``) and optionally the latency of the model in one model file
    (``model.pt`` of a training run, or one written by ``blurdm-bench import-weights``): the whole model as it
    restores an image (prior + backbone; the sharp encoder of a stage-1 file is not counted)."""
    model, spec = load_deblur_model(path)
    if model.prior_mode == "sharp_encoder":
        raise InvalidInputError(f"{path}: a stage-1 model restores an image only with its sharp image (the oracle): "
                                f"profile a stage-3, stage-2 or baseline model file")
    rows = []
    for h, w in sizes:
        with torch.device("meta"):  # the counts need no real weights
            counted = build_deblur_model(spec)
        entry = {"size": [h, w], **_cost_entry(counted, torch.zeros((1, 3, h, w), device="meta"))}
        if latency:
            model = model.to(device).eval()
            xin = torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(seed)).to(device)

            def fn(m=model, xin=xin):
                return restore_tensor(m, xin, generator=torch.Generator().manual_seed(seed))

            with torch.inference_mode():
                entry["latency"] = summarise_times(time_callable(fn, device, warmup, repeats))
        rows.append(entry)
    return {"model_file": str(path), "spec": spec, "sizes": rows, **environment(device)}


def measure_fast_latency(backbones: list[str], scale: str, T: int, sizes: list[tuple[int, int]], warmup: int,
                         repeats: int, device: torch.device, seed: int = 0, progress: bool = True,
                         eager: dict | None = None, backend=None) -> dict:
    """The same timings as :func:`measure_latency` on the fast path (:mod:`models.fast_inference`: prior and
    backbone replayed from one CUDA graph per window shape), and the speed-up over ``eager`` (its result).
    ``backend`` replaces the CUDA-graph capture (tests on the CPU)."""
    warmup = max(warmup, 3)  # the second call of a shape captures its graph: time replays only
    jobs = [("blurdm_module", None, size) for size in sizes]
    jobs += [(name, variant, size) for name in backbones for variant in SIDES for size in sizes]
    rows = []
    for name, variant, (h, w) in tqdm(jobs, desc="timing (fast)", disable=not progress, unit="run"):
        torch.manual_seed(seed)
        if name == "blurdm_module":
            model = build_prior("blurdm", T, scale).to(device).eval()
        else:
            model = build_variant(name, variant, scale, T).to(device).eval()
        x = torch.rand((1, 3, h, w), generator=torch.Generator().manual_seed(seed)).to(device)
        if name == "blurdm_module":
            run_prior, xin = fast_prior(model, backend), x[..., : h - h % 4, : w - w % 4]

            def fn(xin=xin, run_prior=run_prior):
                return run_prior(xin, torch.Generator().manual_seed(seed))
        else:
            def fn(m=model, x=x):
                return restore_full(fast_adapter(m, torch.Generator().manual_seed(seed), backend), x)
        with torch.inference_mode():
            times = time_callable(fn, device, warmup, repeats)
        rows.append({"model": name, "variant": variant, "size": [h, w], "mode": "fast", **summarise_times(times)})
        del model, fn
        if device.type == "cuda":
            torch.cuda.empty_cache()
    medians = {(r["model"], r["variant"], tuple(r["size"])): r["median_ms"] for r in rows}
    eager_medians = {(r["model"], r["variant"], tuple(r["size"])): r["median_ms"]
                     for r in (eager or {}).get("results", [])}
    overhead = []
    for name in backbones:
        for size in sizes:
            base, with_prior = medians[(name, "baseline", tuple(size))], medians[(name, "blurdm", tuple(size))]
            overhead.append({"model": name, "size": list(size), "baseline_ms": base, "blurdm_ms": with_prior,
                             "added_ms": with_prior - base, "latency_ratio": _ratio(with_prior, base)})
    speedup = []
    for key, fast_ms in medians.items():
        eager_ms = eager_medians.get(key)
        speedup.append({"model": key[0], "variant": key[1], "size": list(key[2]), "eager_ms": eager_ms,
                        "fast_ms": fast_ms, "speedup": eager_ms / fast_ms if eager_ms and fast_ms else None})
    return {"results": rows, "overhead": overhead, "speedup": speedup, "warmup": warmup, "repeats": repeats,
            "what": "as the eager timings, each padded image / tile replayed from a CUDA graph of prior + backbone "
                    "captured at that shape (models.fast_inference); the start noise is drawn eagerly"}


def environment(device: torch.device) -> dict:
    """Where a timing was taken: device, threads, versions."""
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


# ---------------------------------------------------------------------------------------------
def profile_models(scale: str = "tiny", backbones: list[str] | None = None, T: int = 5, latency: bool = False,
                   sizes: list[tuple[int, int]] | None = None, warmup: int = 3, repeats: int = 10,
                   device: str = "auto", published_costs: str | Path | None = None,
                   paper_yaml: str | Path | None = None, progress: bool = True, fast: bool = True,
                   latency_backbones: list[str] | None = None) -> dict:
    """Everything ``blurdm-bench profile`` writes, as a dict (see the module doc). ``latency_backbones``: the
    backbones whose latency is timed (None: all of ``backbones``); the counts cover every one."""
    backbones = list(backbones or BACKBONES)
    unknown = [b for b in backbones if b not in BACKBONES]
    if unknown:
        raise InvalidInputError(f"unknown backbone(s) {unknown}; allowed: {', '.join(BACKBONES)}")
    published = load_published_costs(published_costs, paper_yaml)
    results = count_all(backbones, scale, T, progress=progress)
    compare_published(results, published["backbones"], scale)
    claims = published["overhead"]
    module = results["blurdm_module"]
    report = {
        "scale": scale,
        "T": T,
        "input_shape": list(COST_INPUT_SHAPE),
        "counting": COUNTING_NOTES,
        "blurdm_module": module,
        "backbones": results["backbones"],
        "paper_claims": {
            "overhead": claims,
            "source": published["sources"].get("overhead"),
            "ours": {
                "blurdm_module_gmacs": module["macs"] / 1e9,
                "blurdm_module_thop_gmacs": module["thop_macs"] / 1e9,
                "blurdm_module_params_m": module["params"] / 1e6,
                "max_macs_ratio": max((e["overhead"]["macs_ratio"] for e in results["backbones"].values()
                                       if e["overhead"]["macs_ratio"] is not None), default=None),
            },
            "comparable": scale == "paper",
        },
        "published_backbones_source": published["sources"].get("backbones"),
        "prior_share": prior_shares(backbones, T, progress=progress),
        # where the numbers come from: counts on the meta device, timings (if any) on this device
        "environment": {"counting_device": "meta", **environment(pick_device(device))},
    }
    if latency:
        dev = pick_device(device)
        timed = [b for b in backbones if latency_backbones is None or b in latency_backbones]
        lat = measure_latency(timed, scale, T, [tuple(s) for s in (sizes or [(256, 256)])], warmup, repeats,
                              dev, progress=progress)
        if fast and dev.type == "cuda":  # eager AND fast (CUDA graphs) on a GPU; eager only on the CPU
            lat["fast"] = measure_fast_latency(timed, scale, T, [tuple(s) for s in (sizes or [(256, 256)])],
                                               warmup, repeats, dev, progress=progress, eager=lat)
        report["latency"] = lat
        module_rows = [r for r in lat["results"] if r["model"] == "blurdm_module"]
        report["paper_claims"]["ours"]["blurdm_module_latency_ms"] = {
            f"{r['size'][0]}x{r['size'][1]}": r["median_ms"] for r in module_rows}
    return report

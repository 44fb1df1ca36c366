"""Miniature copies of the official dataset archives, for rehearsing ``blurdm-bench fetch`` offline.

:func:`write_archives` writes ``GOPRO_Large.zip``, ``HIDE_dataset.zip`` and ``RealBlur.tar.gz`` with the
layout and file names of the real downloads but only ``pairs_per_split`` pairs per split, made from the
natural photos bundled in installed packages (``pipelines.core.config.PHOTO_SOURCES``): each sharp frame is
a crop of a photo resized to ``size`` (H, W), its blurred partner the average of 7 copies shifted along
a random line (GoPro's ``blur`` averages the 8-bit values, ``blur_gamma`` averages in linear light,
gamma 2.2; RealBlur-R frames are darker, like its camera-RAW images). Beside the archives it writes
``rehearsal.json`` (sha256, size and member count of each archive; the pair counts that
``blurdm-bench fetch`` must find, per dataset of ``params.yaml`` ``fetch.datasets``) and
``checksums.yaml`` (the ``pipelines/checksums.yaml`` format, for ``fetch --checksums``);
:func:`write_params` turns a params file into one whose datasets download them from a local server.

The same arguments give byte-identical archives on one machine (members sorted, fixed timestamps,
uid/gid 0, gzip mtime 0, fixed PNG / deflate levels); another zlib or Pillow build may change bytes.

Layouts (what the real archives hold at their root, and the sources they were checked against):

``GOPRO_Large.zip`` (Nah et al., CVPR 2017): ``train/`` and ``test/`` AT THE ROOT (no ``GOPRO_Large/``
folder), then ``<sequence>/{blur,blur_gamma,sharp}/<6-digit frame>.png``; 22 train / 11 test
sequences, 2103 / 1111 pairs; no top-level file is documented anywhere we looked.
  - rimchang/RealBlur@9ef6f28/link_file.sh with @68f7658/extract_tar_link_file.sh (the RealBlur
    authors): ``unzip GOPRO_Large.zip -d ./dataset/`` then link ``dataset/train`` and ``dataset/test``:
    the zip's root holds train/ and test/.
  - a GoPro loader in the code index (read_file id 36911503972, "GoPro Deblurring Dataset Design",
    2024) extracts GOPRO_Large.zip into a folder and reads ``<folder>/train`` and ``<folder>/test``.
  - SeungjunNah/DeepDeblur_release@02f97c3/README.md: 22 / 11 sequences, 2103 / 1111 pairs,
    ``dataset/GOPRO_Large/train/GOPRxxxx_xx_xx/blur/xxxxxx.png`` (the zip unpacked INTO a GOPRO_Large
    folder; it does not say the zip holds one). SeungjunNah/DeepDeblur-PyTorch@8b41845/
    src/data/gopro_large.py: blurred frames read from ``blur_gamma``, sharp from ``sharp``.
  - sequence names and first frames: jiangsutx/SRN-Deblur@3bf0f22/src/datalist_gopro.txt (train:
    GOPR0372_07_00 from 000047, GOPR0372_07_01 from 000601, GOPR0374_11_00 from 000001, one line
    ``<seq>/sharp/<f>.png <seq>/blur/<f>.png``); test frames GOPR0384_11_00/000001,
    GOPR0384_11_05/004001, GOPR0385_11_01/003011 from the DeepDeblur demo commands (index search).
  - SeungjunNah/seungjunnah.github.io@11d02fb/Datasets/gopro.md: the download links, no listing.
  The brief asked for ``GOPRO_Large/{train,test}``; the two sources above that unpack the zip itself
  say otherwise, and the fetcher finds ``{train,test}/<seq>/{blur,sharp}`` at any depth, so we follow
  them (change :data:`GOPRO_ROOT` to rehearse the other reading).

``HIDE_dataset.zip`` (Shen et al., ICCV 2019): one folder ``HIDE_dataset/`` holding ``GT/`` (the sharp
frames of BOTH splits), ``train/`` (6397 blurred) and ``test/test-close-ups/`` + ``test/test-long-shot/``
(2025 blurred); a blurred frame and its ground truth have the SAME file name, e.g.
``HIDE_dataset/test/test-long-shot/1fromGOPR0950.png`` <-> ``HIDE_dataset/GT/1fromGOPR0950.png``; names
are ``<k>fromGOPR<nnnn>.MP4.png`` or ``<k>fromGOPR<nnnn>.png``.
  - joanshen0508/HA_deblur@029567d/README.md: the Dropbox link, 8422 pairs = 6397 train / 2025 test,
    1304 long-shot / 7118 close-ups (no folder listing).
  - radicmagda/diplomski@2fa0145/scripts/data_preparation/hide_setup.sh: ``unzip HIDE_dataset.zip -d
    HIDE_dataset`` then reads ``HIDE_dataset/HIDE_dataset/{train,test/test-close-ups,test/test-long-shot}``
    and ``GT/<same name>`` for both splits, and moves what else is left in ``HIDE_dataset/HIDE_dataset/``
    to an "annotations" folder: the zip may hold more top-level files, but no source names them, so
    none are invented here (``train.txt`` / ``test.txt`` were NOT confirmed).
  - HIDE loaders in the code index (ids 10907597942, 11120562035): ``HIDE_dataset/{train,test}/``,
    ``test-close-ups`` / ``test-long-shot``, GT found by base name in ``HIDE_dataset/GT/``.
  - file names: MPRNet / MAXIM deblurring samples ``1fromGOPR0950.png``, ``1fromGOPR1096.MP4.png``,
    ``109fromGOPR1096.MP4.png``, ``110fromGOPR1087.MP4.png``; ``22fromGOPR1040.MP4.png`` (index search).
    Which sequence lies in which split or sub-folder is not documented: ours is illustrative.

``RealBlur.tar.gz`` (Rim et al., ECCV 2020): at the root ``RealBlur-J_ECC_IMCORR_centroid_itensity_ref/``
and ``RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref/`` (``scene<NNN>/{blur,gt}/{blur,gt}_<k>.png``) and
the four lists ``RealBlur_{J,R}_{train,test}_list.txt``; 3758 train / 980 test pairs per camera.
  - rimchang/RealBlur@9ef6f28/link_file.sh: ``tar -zxvf RealBlur.tar.gz -C ./dataset/`` gives
    ``dataset/RealBlur-{J,R}_...``; rimchang/RealBlur@7af5454/evaluation_RealBlur_ecc.py reads
    ``<gt_root>/<scene>/blur/blur_<k>.png`` and ``<gt_root>/<scene>/gt/gt_<k>.png`` (and knows one
    scene folder ``scene244_reflect``, not reproduced).
  - rimchang/RSBlur@5b104f3/datalist/RealBlur_J_{train,test}_list.txt (the authors' lists): one line
    per pair, ``<gt path> <blur path> `` -- GT FIRST, one space, paths relative to the archive root,
    a trailing space before the LF; the last line has neither. Train scenes 183, 210, 010..., test
    scenes 230, 050, 205...; within a scene k runs 7, 2, 6, 20, 12, 11, 15, 1, 14, ...
  - radicmagda/diplomski@0c984d3/scripts/data_preparation/realblur_setup.sh: the lists sit at the
    archive root next to both folders, and are read as ``gt_path blur_path``.
"""
from __future__ import annotations

import argparse
import calendar
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from pipelines.core.files import write_json, write_text

SPLITS = ("train", "test")
FIXED_DATE = (2020, 8, 1, 0, 0, 0)  # every member's timestamp
FIXED_EPOCH = calendar.timegm(FIXED_DATE + (0, 0, 0))
PNG_LEVEL = 1  # fast: PNG encoding is most of the time at 720 x 1280 (level 6: 2.3x slower, 15 % smaller)
DEFLATE_LEVEL = 6
INFO_FILE = "rehearsal.json"
CHECKSUMS_FILE = "checksums.yaml"
BLUR_TAPS = 7

GOPRO_ARCHIVE, HIDE_ARCHIVE, REALBLUR_ARCHIVE = "GOPRO_Large.zip", "HIDE_dataset.zip", "RealBlur.tar.gz"
GOPRO_ROOT = ""  # the zip's root holds train/ and test/ (module docstring); "GOPRO_Large/" for the other reading
GOPRO_SEQUENCES = {  # (sequence, first frame): real names and frame numbers
    "train": (("GOPR0372_07_00", 47), ("GOPR0372_07_01", 601), ("GOPR0374_11_00", 1)),
    "test": (("GOPR0384_11_00", 1), ("GOPR0384_11_05", 4001), ("GOPR0385_11_01", 3011)),
}
HIDE_ROOT = "HIDE_dataset"
HIDE_FOLDERS = {  # split -> (blurred-image folder, name patterns); GT/ holds the same names
    "train": (("train", ("{k}fromGOPR1040.MP4.png", "{k}fromGOPR1037.MP4.png")),),
    "test": (("test/test-close-ups", ("{k}fromGOPR1096.MP4.png", "{k}fromGOPR1087.MP4.png")),
             ("test/test-long-shot", ("{k}fromGOPR0950.png",))),
}
REALBLUR_FOLDERS = {"J": "RealBlur-J_ECC_IMCORR_centroid_itensity_ref",
                    "R": "RealBlur-R_BM3D_ECC_IMCORR_centroid_itensity_ref"}
REALBLUR_SCENES = {"train": ("scene183", "scene210", "scene010"), "test": ("scene230", "scene050", "scene205")}
REALBLUR_K_ORDER = (7, 2, 6, 20, 12, 11, 15, 1, 14, 21, 13, 17, 8, 5, 10, 3, 18, 16, 4, 19, 9)
GAMMA = 2.2


# ------------------------------------------------------------------------------------------- images
@lru_cache(maxsize=16)
def _photo(name: str) -> np.ndarray:
    """A bundled photo as RGB uint8, located inside its installed package (no package code runs)."""
    import importlib.util

    from PIL import Image

    # imported here: the photo loaders import scikit-image, sporco and mahotas (slow), only needed to write archives
    from pipelines.core.config import PHOTO_SOURCES

    package, rel = PHOTO_SOURCES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"photo {name!r}: package {package!r} is not installed")
    with Image.open(Path(next(iter(spec.submodule_search_locations))) / rel) as img:
        return np.asarray(img.convert("RGB"))


def _photo_names() -> list[str]:
    from pipelines.core.config import PHOTO_SOURCES

    return sorted(PHOTO_SOURCES)


def _crop(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random window of ``photo`` with the aspect of ``size`` (60-100 % of the largest), resized."""
    from PIL import Image

    height, width = size
    ph, pw = photo.shape[:2]
    scale = min(ph / height, pw / width) * rng.uniform(0.6, 1.0)
    ch, cw = max(1, round(height * scale)), max(1, round(width * scale))
    top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    window = Image.fromarray(photo[top:top + ch, left:left + cw])
    return np.asarray(window.resize((width, height), Image.BICUBIC))


def _motion_blur(frame: np.ndarray, rng: np.random.Generator, linear: bool) -> np.ndarray:
    """Average of ``BLUR_TAPS`` copies of ``frame`` shifted along a random line (edges repeated);
    ``linear``: average in linear light (gamma 2.2), as a camera integrates light."""
    height, width = frame.shape[:2]
    angle = rng.uniform(0.0, np.pi)
    length = max(2.0, rng.uniform(0.01, 0.03) * max(height, width))
    steps = np.linspace(-0.5, 0.5, BLUR_TAPS) * length
    dys, dxs = np.rint(steps * np.sin(angle)).astype(int), np.rint(steps * np.cos(angle)).astype(int)
    pad = int(max(np.abs(dys).max(), np.abs(dxs).max()))
    values = frame.astype(np.float32) / 255.0
    if linear:
        values = values ** GAMMA
    padded = np.pad(values, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    total = np.zeros_like(values)
    for dy, dx in zip(dys, dxs):
        total += padded[pad + dy:pad + dy + height, pad + dx:pad + dx + width]
    mean = total / BLUR_TAPS
    if linear:
        mean = mean ** (1.0 / GAMMA)
    return np.rint(np.clip(mean, 0.0, 1.0) * 255.0).astype(np.uint8)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=PNG_LEVEL)
    return buffer.getvalue()


def _pair(seed: int, dataset: int, index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.random.Generator]:
    """The sharp frame of pair ``index`` of ``dataset`` and the generator that then draws its blur."""
    rng = np.random.default_rng([seed, dataset, index])
    names = _photo_names()
    sharp = _crop(_photo(names[(seed + 7 * dataset + index) % len(names)]), size, rng)
    return sharp, rng


def _twin(rng: np.random.Generator) -> np.random.Generator:
    """A generator in the same state (the two blurs of a GoPro pair follow one blur path)."""
    copy = np.random.default_rng()
    copy.bit_generator.state = rng.bit_generator.state
    return copy


# ---------------------------------------------------------------------------------------- datasets
Plan = dict  # split -> (pairs, (H, W)): how many pairs of which size each split of one archive holds


def _gopro(plan: Plan, seed: int) -> dict[str, bytes]:
    members, index = {}, 0
    for split in SPLITS:
        sequences = GOPRO_SEQUENCES[split]
        n, size = plan[split]
        for i in range(n):
            sequence, first = sequences[i % len(sequences)]
            frame = f"{first + i // len(sequences):06d}.png"
            sharp, rng = _pair(seed, 0, index, size)
            folder = f"{GOPRO_ROOT}{split}/{sequence}"
            members[f"{folder}/sharp/{frame}"] = _png(sharp)
            members[f"{folder}/blur_gamma/{frame}"] = _png(_motion_blur(sharp, _twin(rng), linear=True))
            members[f"{folder}/blur/{frame}"] = _png(_motion_blur(sharp, rng, linear=False))
            index += 1
    return members


def _hide_names(split: str, n: int) -> list[str]:
    """``n`` blurred-image paths of ``split``, spread over its folders and name patterns."""
    folders = HIDE_FOLDERS[split]
    paths = []
    for i in range(n):
        folder, patterns = folders[i % len(folders)]
        pattern = patterns[(i // len(folders)) % len(patterns)]
        paths.append(f"{HIDE_ROOT}/{folder}/" + pattern.format(k=1 + i))
    return paths


def _hide(plan: Plan, seed: int) -> dict[str, bytes]:
    members, index = {}, 0
    for split in SPLITS:
        n, size = plan[split]
        for path in _hide_names(split, n):
            sharp, rng = _pair(seed, 1, index, size)
            members[path] = _png(_motion_blur(sharp, rng, linear=True))
            members[f"{HIDE_ROOT}/GT/{path.rsplit('/', 1)[1]}"] = _png(sharp)
            index += 1
    return members


def realblur_list_text(pairs: list[tuple[str, str]]) -> str:
    """The official list-file format: ``<gt> <blur> `` per line (GT first, trailing space), LF between
    lines, nothing after the last pair (rimchang/RSBlur datalist/RealBlur_J_*_list.txt)."""
    return "\n".join(f"{gt} {blur} " for gt, blur in pairs).rstrip(" ")


def _realblur(plan: Plan, seed: int) -> dict[str, bytes]:
    """RealBlur-J and -R show the same captures (camera JPEG vs. developed RAW): same scenes, same k."""
    members = {}
    for camera, root in REALBLUR_FOLDERS.items():
        first = 0  # the index of the split's first pair
        for split in SPLITS:
            scenes, listed = REALBLUR_SCENES[split], []
            n, size = plan[split]
            for i in range(n):
                scene, k = scenes[i % len(scenes)], REALBLUR_K_ORDER[(i // len(scenes)) % len(REALBLUR_K_ORDER)]
                sharp, rng = _pair(seed, 2, first + i, size)
                if camera == "R":  # RAW-like rendering: darker, flatter
                    sharp = np.rint(255.0 * (sharp / 255.0) ** 1.6).astype(np.uint8)
                gt, blur = f"{root}/{scene}/gt/gt_{k}.png", f"{root}/{scene}/blur/blur_{k}.png"
                members[gt], members[blur] = _png(sharp), _png(_motion_blur(sharp, rng, linear=True))
                listed.append((gt, blur))
            members[f"RealBlur_{camera}_{split}_list.txt"] = realblur_list_text(listed).encode()
            first += n
    return members


# ----------------------------------------------------------------------------------------- archives
def _folders(names) -> list[str]:
    """Every parent folder of the member names, as ``a/``, ``a/b/`` ..."""
    found = set()
    for name in names:
        parts = name.split("/")[:-1]
        found.update("/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1))
    return sorted(found)


def _write_zip(path: Path, members: dict[str, bytes]) -> int:
    entries = sorted([(folder, None) for folder in _folders(members)] + list(members.items()))
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.create_system = 3  # Unix, whatever the machine
            if data is None:
                info.external_attr = (0o40755 << 16) | 0x10
                zf.writestr(info, b"", compress_type=zipfile.ZIP_STORED)
            else:
                info.external_attr = 0o100644 << 16
                zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=DEFLATE_LEVEL)
    return len(entries)


def _write_tar_gz(path: Path, members: dict[str, bytes]) -> int:
    entries = sorted([(folder.rstrip("/"), None) for folder in _folders(members)] + list(members.items()))
    with open(path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=DEFLATE_LEVEL) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_EPOCH, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.mode, info.size = 0o644, len(data)
                tf.addfile(info, io.BytesIO(data))
    return len(entries)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


ARCHIVE_DATASETS = {"gopro": GOPRO_ARCHIVE, "hide": HIDE_ARCHIVE, "realblur": REALBLUR_ARCHIVE}  # `splits` keys


def archive_plans(pairs_per_split: int = 2, size: tuple[int, int] = (72, 128),
                  splits: dict | None = None) -> dict[str, Plan]:
    """``{gopro|hide|realblur: {split: (pairs, (H, W))}}``: ``pairs_per_split`` pairs of ``size`` everywhere,
    except where ``splits`` (``{dataset: {split: (pairs, (H, W))}}``, same keys) says otherwise. RealBlur-J and
    -R share one plan (one archive). Refuses an unknown key, fewer than 1 pair, or a side under 8 pixels."""
    splits = splits or {}
    unknown = sorted(set(splits) - set(ARCHIVE_DATASETS)) + sorted(
        f"{d}.{s}" for d, by_split in splits.items() if d in ARCHIVE_DATASETS for s in by_split if s not in SPLITS)
    if unknown:
        raise ValueError(f"unknown dataset / split {unknown}; allowed: {sorted(ARCHIVE_DATASETS)} x {list(SPLITS)}")
    plans = {}
    for dataset in ARCHIVE_DATASETS:
        plan = {}
        for split in SPLITS:
            n, (height, width) = splits.get(dataset, {}).get(split, (pairs_per_split, size))
            if int(n) < 1 or int(height) < 8 or int(width) < 8:
                raise ValueError(f"{dataset} {split}: need at least 1 pair and a size of at least 8 x 8, got "
                                 f"{n} pairs of {height} x {width}")
            plan[split] = (int(n), (int(height), int(width)))
        plans[dataset] = plan
    return plans


def write_archives(out_dir: str | os.PathLike, *, pairs_per_split: int = 2, size: tuple[int, int] = (72, 128),
                   seed: int = 0, splits: dict | None = None) -> dict[str, Path]:
    """Write the three miniature archives into ``out_dir`` and return ``{archive file name: path}``.

    Every split of every dataset gets ``pairs_per_split`` pairs of ``size`` = (H, W) pixels (GoPro and
    HIDE frames are 720 x 1280), except where ``splits`` names its own (:func:`archive_plans`; e.g.
    ``{"hide": {"test": (1, (720, 1280))}}``: one full-resolution HIDE test pair). Also writes
    ``rehearsal.json`` and ``checksums.yaml`` into ``out_dir`` (see :func:`read_info`); an existing archive
    of the same name is replaced."""
    plans = archive_plans(pairs_per_split, size, splits)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    makers = {"gopro": (_gopro, _write_zip), "hide": (_hide, _write_zip), "realblur": (_realblur, _write_tar_gz)}
    paths, archives = {}, {}
    for dataset, archive in ARCHIVE_DATASETS.items():
        members_of, write = makers[dataset]
        path, tmp = out / archive, out / f".{archive}.tmp"
        count = write(tmp, members_of(plans[dataset], seed))
        os.replace(tmp, path)
        paths[archive] = path
        archives[archive] = {"sha256": _sha256(path), "bytes": path.stat().st_size, "members": count}

    def pairs(dataset: str, *split_names: str) -> dict[str, int]:
        return {split: plans[dataset][split][0] for split in split_names}

    info = {
        "generator": "pipelines.rehearsal.archives.write_archives",
        "arguments": {"pairs_per_split": int(pairs_per_split), "size": [int(v) for v in size], "seed": int(seed),
                      "splits": {d: {s: [n, list(hw)] for s, (n, hw) in plan.items()} for d, plan in plans.items()}},
        "archives": archives,
        "datasets": {  # params.yaml fetch.datasets name -> archive + the pairs the fetcher must find
            "gopro": {"archive": GOPRO_ARCHIVE, "expected_pairs": pairs("gopro", *SPLITS)},
            "hide": {"archive": HIDE_ARCHIVE, "expected_pairs": pairs("hide", "test")},  # the fetcher reads test only
            "realblur_j": {"archive": REALBLUR_ARCHIVE, "expected_pairs": pairs("realblur", *SPLITS)},
            "realblur_r": {"archive": REALBLUR_ARCHIVE, "expected_pairs": pairs("realblur", *SPLITS)},
        },
        "seconds": round(time.perf_counter() - start, 2),  # not part of the archives' bytes
    }
    write_json(out / INFO_FILE, info)
    write_text(out / CHECKSUMS_FILE, "# sha256 of the miniature rehearsal archives (pipelines/rehearsal/archives.py)\n"
               + "".join(f"{a}: {v['sha256']}\n" for a, v in archives.items()))
    return paths


def read_info(out_dir: str | os.PathLike) -> dict:
    """The ``rehearsal.json`` that :func:`write_archives` wrote into ``out_dir``."""
    return json.loads((Path(out_dir) / INFO_FILE).read_text())


def write_params(base_params: str | os.PathLike, dest: str | os.PathLike, base_url: str, info: dict) -> Path:
    """Copy the params file ``base_params`` to ``dest`` with every dataset of ``info`` (see
    :func:`read_info`) downloading its miniature archive from ``base_url`` (a local server) and
    expecting the miniature pair counts; everything else is kept (the YAML comments are not)."""
    raw = yaml.safe_load(Path(base_params).read_text())
    datasets = raw["fetch"]["datasets"]
    for name, entry in info["datasets"].items():
        spec = {k: v for k, v in datasets[name].items() if k not in ("url", "urls", "manual")}
        spec.update(urls=[f"{base_url.rstrip('/')}/{entry['archive']}"], manual=False,
                    expected_pairs=dict(entry["expected_pairs"]))
        datasets[name] = spec
    dest = Path(dest)
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.rehearsal.archives",
                                     description="Write miniature GoPro / HIDE / RealBlur archives into OUT.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--pairs", type=int, default=2, help="pairs per split (default 2)")
    parser.add_argument("--size", type=int, nargs=2, default=(72, 128), metavar=("H", "W"),
                        help="frame size (default 72 128; the real GoPro / HIDE frames are 720 1280)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_archives(args.out, pairs_per_split=args.pairs, size=tuple(args.size), seed=args.seed)
    print(json.dumps({k: v for k, v in read_info(args.out).items() if k != "generator"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

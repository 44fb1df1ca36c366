"""``blurdm-bench import-weights``: a published checkpoint of the authors (or of a backbone's authors) as our model file.

    blurdm-bench import-weights --backbone mimo_unet_plus --checkpoint MIMO-UNetPlus.pkl --out models/mimo_plus.pt
    blurdm-bench import-weights --backbone fftformer --prior blurdm --checkpoint BlurDM_FFTformer.pth --out m.pt
    blurdm-bench evaluate --checkpoint m.pt --data data/gopro/test --dataset gopro --out eval/imported/fftformer

The file formats accepted (MIMO-UNet / MIMO-UNet+ ``.pkl``, Stripformer / FFTformer / LoFormer ``.pth``, the
BlurDM ``*Prior`` files, one file or the backbone and the BlurDM module in two) and the key mapping are
:mod:`models.official`; every file is read as plain tensors (``torch.load(weights_only=True)``), and a checkpoint
whose keys or shapes do not fit the network is refused, naming the first few. The model file written is the one
``evaluate``, ``deblur`` and ``profile`` take (paper scale, float32, the official input range in its spec, the
source file and its sha256 in its meta).
"""
from __future__ import annotations

import argparse

from models.official import OfficialCheckpointError, import_weights
from pipelines.core.config import BACKBONE_NAMES
from pipelines.core.errors import InvalidInputError, MissingFileError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", required=True, choices=BACKBONE_NAMES)
    parser.add_argument("--prior", default=None, choices=("blurdm",),
                        help="a BlurDM release (backbone with prior fusion + the BlurDM module); default: the "
                             "backbone's own release, no prior")
    parser.add_argument("--checkpoint", required=True, help="the official checkpoint file")
    parser.add_argument("--dm-checkpoint", default=None,
                        help="the BlurDM module's file, when it is separate from the backbone's (--prior blurdm)")
    parser.add_argument("--param-key", default=None,
                        help="the entry holding the backbone's weights (e.g. params_ema of a BasicSR file)")
    parser.add_argument("--out", required=True, help="our model file to write (model.pt)")


def run(args) -> int:
    from pathlib import Path

    for path in (args.checkpoint, args.dm_checkpoint):
        if path is not None and not Path(path).is_file():
            raise MissingFileError(f"{path}: no such checkpoint file")
    if args.dm_checkpoint is not None and args.prior is None:
        raise InvalidInputError("--dm-checkpoint is the BlurDM module's file: give --prior blurdm too")
    try:
        out = import_weights(args.backbone, args.checkpoint, args.out, prior=args.prior,
                             dm_checkpoint=args.dm_checkpoint, param_key=args.param_key)
    except OfficialCheckpointError as err:
        raise InvalidInputError(str(err)) from None
    print(f"wrote {out}: {args.backbone}{' + BlurDM' if args.prior else ''} (paper scale) from {args.checkpoint}")
    return 0

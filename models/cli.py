"""`tinyexit train early-exit|denoiser`."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model family into a run directory",
                       description="Train a model family into RUN_DIR (checkpoints, per-exit predictions, config.json).")
    p.add_argument("family", choices=["early-exit", "denoiser"],
                   help="early-exit: the early-exit ResNet + plain baseline + small baselines; "
                        "denoiser: the binary diffusion denoiser")
    p.add_argument("--dataset", default="digits",
                   help="digits | cifar10 | npz:PATH | folder:PATH (default: digits; docs/training.md)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py (cifar10 only)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, data order and augmentation")
    p.add_argument("--force", action="store_true", help="allow writing into a non-empty run directory")
    p.add_argument("--arch", default=None,
                   help="early-exit backbone: resnet-digits | resnet8-ee | dscnn-ee | mobilenetv1-ee, or a .toml file "
                        "placing exits and head widths (docs/training.md); default resnet-digits")
    p.add_argument("--study", action=argparse.BooleanOptionalAction, default=None,
                   help="also train the study networks (plain baseline, small networks, extra seeds); default: on "
                        "for the default digits ResNet, off when --arch is given")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel training processes for the study networks (default 2); one network trains in-process")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tinyexit.models.data import load_dataset
    from tinyexit.rundir import prepare_output_dir

    splits = load_dataset(args.dataset, args.data_dir)
    arch = None
    if args.family == "early-exit":  # resolve and check the arch before anything is written
        from tinyexit.models.backbones import resolve_arch

        arch = resolve_arch(args.arch, splits.input_shape, splits.num_classes)
    out = Path(args.out)
    # Adding the second family to an existing run is normal; anything else needs --force.
    existing = out.is_dir() and (out / "config.json").is_file()
    prepare_output_dir(out, force=args.force or existing)
    if args.family == "early-exit":
        train_early_exit(splits, args, out, arch)
    else:
        from tinyexit.models.train_denoiser import DenoiserRunConfig, train_denoiser

        cfg = DenoiserRunConfig(dataset=args.dataset, seed=args.seed,
                                **({"epochs": args.epochs} if args.epochs is not None else {}))
        train_denoiser(splits, cfg, out)
    return 0


def train_early_exit(splits, args, out, arch=None) -> None:
    from dataclasses import replace

    from tinyexit.models.backbones import resolve_arch
    from tinyexit.models.train_run import ClassifierRunConfig, train_classifiers

    arch_cfg, origin = arch or resolve_arch(getattr(args, "arch", None), splits.input_shape, splits.num_classes)
    study = getattr(args, "study", None)
    study = getattr(args, "arch", None) is None if study is None else study
    cfg = ClassifierRunConfig(dataset=args.dataset, data_dir=args.data_dir, arch=arch_cfg, study=study,
                              arch_name=origin["name"], arch_toml=origin["toml"])
    if getattr(args, "workers", None) is not None:
        cfg = replace(cfg, workers=args.workers)
    train = replace(cfg.train, seed=args.seed, **({"epochs": args.epochs} if args.epochs is not None else {}))
    for row in train_classifiers(splits, replace(cfg, train=train), out):
        print(f"trained {row['name']}: val accuracy {row['final_val_acc']:.4f} in {row['seconds']:.1f} s")

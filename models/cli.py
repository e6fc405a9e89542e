"""`tinyexit train early-exit|denoiser`."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("train", help="train a model family into a run directory",
                       description="Train a model family into RUN_DIR (checkpoints, per-exit predictions, config.json).")
    p.add_argument("family", choices=["early-exit", "denoiser"],
                   help="early-exit: the early-exit ResNet + plain baseline + small baselines; "
                        "denoiser: the binary diffusion denoiser")
    p.add_argument("--dataset", default="digits", help="digits | cifar10 | npz:PATH (default: digits)")
    p.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py (cifar10 only)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--epochs", type=int, default=None, help="override the number of training epochs")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, data order and augmentation")
    p.add_argument("--force", action="store_true", help="allow writing into a non-empty run directory")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tinyexit.models.data import load_dataset
    from tinyexit.rundir import prepare_output_dir

    splits = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out)
    # Adding the second family to an existing run is normal; anything else needs --force.
    existing = out.is_dir() and (out / "config.json").is_file()
    prepare_output_dir(out, force=args.force or existing)
    if args.family == "early-exit":
        train_early_exit(splits, args, out)
    else:
        from tinyexit.models.train_denoiser import DenoiserRunConfig, train_denoiser

        cfg = DenoiserRunConfig(dataset=args.dataset, seed=args.seed,
                                **({"epochs": args.epochs} if args.epochs is not None else {}))
        train_denoiser(splits, cfg, out)
    return 0


def train_early_exit(splits, args, out) -> None:
    from dataclasses import replace

    from tinyexit.models.train_run import ClassifierRunConfig, train_classifiers

    cfg = ClassifierRunConfig(dataset=args.dataset, data_dir=args.data_dir)
    train = replace(cfg.train, seed=args.seed, **({"epochs": args.epochs} if args.epochs is not None else {}))
    for row in train_classifiers(splits, replace(cfg, train=train), out):
        print(f"trained {row['name']}: val accuracy {row['final_val_acc']:.4f} in {row['seconds']:.1f} s")

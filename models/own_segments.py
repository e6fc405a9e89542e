"""Your own PyTorch segments: check them against the segment contract, train them (or keep trained
weights) and write a run directory that `tinyexit export`, firmware, bench and report accept.

    from tinyexit.models.own_segments import train_own_segments
    run = train_own_segments(stages=[stage0, stage1], heads=[head0, head1], dataset="digits",
                             out="RUN", epochs=8)          # or trained=True to keep your weights

`stages[k]` maps segment k's input to its features (N, C_k, H_k, W_k); `heads[k]` maps those
features to logits (N, num_classes).  Segment k = stages[k] then heads[k]; segment k > 0 takes
features k-1 (the segment contract, docs/artifacts.md).  Modules must come from the exportable
vocabulary (tinyexit.models.module_spec); the checkpoint stores them as JSON plus weights, so the
exporter rebuilds exactly your network.  Training is the toolkit's: joint loss over exits with
self-distillation from the last exit (tinyexit.models.train_classifier), the exit threshold chosen
on val.  docs/training.md walks through it; examples/own_segments.py runs it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from tinyexit.errors import UserError
from tinyexit.models.blocks import Segment, exit_logits

SEGMENTS_ARCH = "early_exit_segments"


@dataclass(frozen=True)
class SegmentsConfig:
    """The JSON spec of every stage and head, and the input they were checked on."""
    stages: tuple          # module specs (tinyexit.models.module_spec)
    heads: tuple
    input_shape: tuple     # (C, H, W)
    num_classes: int

    def to_dict(self) -> dict:
        return {"kind": "own_segments", "stages": list(self.stages), "heads": list(self.heads),
                "input_shape": list(self.input_shape), "num_classes": self.num_classes}

    @classmethod
    def from_dict(cls, d: dict) -> "SegmentsConfig":
        return cls(tuple(d["stages"]), tuple(d["heads"]), tuple(d["input_shape"]), int(d["num_classes"]))


class SegmentNet(nn.Module):
    """Segments from a user's stages and heads (or their specs); forward returns every exit's logits."""

    def __init__(self, cfg: SegmentsConfig, stages=None, heads=None):
        super().__init__()
        from tinyexit.models.module_spec import from_spec

        self.cfg = cfg
        stages = stages if stages is not None else [from_spec(s) for s in cfg.stages]
        heads = heads if heads is not None else [from_spec(h) for h in cfg.heads]
        n = len(stages)
        self.segments = nn.ModuleList(Segment(stages[k], heads[k], last=k == n - 1) for k in range(n))

    @property
    def num_exits(self) -> int:
        return len(self.segments)

    def forward(self, x):
        return exit_logits(self.segments, x)


def check_segments(stages, heads, input_shape: tuple[int, int, int], num_classes: int):
    """A SegmentNet of the user's modules, or one UserError saying which stage or head breaks the contract."""
    import torch

    from tinyexit.models.module_spec import to_spec

    stages, heads = list(stages), list(heads)
    if not stages or len(stages) != len(heads):
        raise UserError(f"own segments: {len(stages)} stages and {len(heads)} heads; give one head per stage "
                        "(at least one)")
    for what, mods in (("stage", stages), ("head", heads)):
        for k, m in enumerate(mods):
            if not isinstance(m, nn.Module):
                raise UserError(f"own segments: {what} {k} is a {type(m).__name__}, not a torch.nn.Module")
    specs = ([to_spec(m, f"stage {k}") for k, m in enumerate(stages)],
             [to_spec(m, f"head {k}") for k, m in enumerate(heads)])
    x = torch.zeros((2, *input_shape))
    with torch.no_grad():
        for k, (stage, head) in enumerate(zip(stages, heads)):
            was = stage.training, head.training
            stage.eval(), head.eval()
            try:
                feats = _call(stage, x, f"stage {k}", tuple(x.shape[1:]))
                if feats.dim() != 4 or min(feats.shape[2:]) < 1:
                    raise UserError(f"own segments: stage {k} returns shape {tuple(feats.shape)}; a stage must return "
                                    "feature maps (N, C, H, W) for the next stage and its head")
                logits = _call(head, feats, f"head {k}", tuple(feats.shape[1:]))
                if tuple(logits.shape) != (2, num_classes):
                    raise UserError(f"own segments: head {k} returns shape {tuple(logits.shape)} for a batch of 2; "
                                    f"expected (N, {num_classes}) logits (pool, flatten, then Linear(C, {num_classes}))")
            finally:
                stage.train(was[0]), head.train(was[1])
            x = feats
    cfg = SegmentsConfig(tuple(specs[0]), tuple(specs[1]), tuple(int(v) for v in input_shape), int(num_classes))
    return SegmentNet(cfg, stages, heads)


def _call(module, x, what: str, shape: tuple):
    try:
        return module(x)
    except Exception as exc:  # a shape mismatch inside the user's module: say where, in one line
        msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise UserError(f"own segments: {what} fails on input (N, {', '.join(map(str, shape))}): {msg}") from None


def train_own_segments(stages, heads, out, dataset: str = "digits", data_dir: str | None = None,
                       epochs: int | None = None, trained: bool = False, train_config=None, seed: int = 0,
                       force: bool = False) -> Path:
    """Check, train (unless `trained`) and save the user's segments into run directory `out`.

    Writes RUN/checkpoints/early_exit.pt, RUN/predictions/early_exit.npz and config.json["classifier"]
    (the same files `tinyexit train early-exit` writes for the early-exit net), so
    `tinyexit export RUN`, `firmware`, `bench` and `report` take it from there.  Returns the run path.
    """
    import torch

    from tinyexit.models.data import load_dataset
    from tinyexit.models.macs import SOURCE as MACS_SOURCE
    from tinyexit.models.train_classifier import TrainConfig, fit_model_and_save
    from tinyexit.rundir import prepare_output_dir, update_config

    splits = load_dataset(dataset, data_dir)
    model = check_segments(stages, heads, splits.input_shape, splits.num_classes)  # before anything is written
    cfg = train_config or TrainConfig(seed=seed)
    if epochs is not None:
        cfg = replace(cfg, epochs=epochs)
    run = prepare_output_dir(out, force)
    section = {"dataset": dataset, "data_dir": data_dir, "arch": model.cfg.to_dict(), "arch_name": "own-segments",
               "train": cfg.to_dict(), "trained_by": "given weights" if trained else "tinyexit",
               "study": False, "splits": splits.sizes(), "input_hw": list(splits.input_shape[1:])}
    update_config(run, "classifier", section)
    (run / "predictions").mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(cfg.seed)
    row = fit_model_and_save("early_exit", model, splits, cfg, run, progress=None, train=not trained,
                             arch_id=SEGMENTS_ARCH)
    update_config(run, "classifier", {**section, "exit_policy": row["exit_policy"], "exit_macs": row["exit_macs"],
                                      "macs_source": MACS_SOURCE})
    return run

"""Named early-exit backbones and the small TOML file that places their exits.

`resolve_arch(spec, input_shape, num_classes)` turns `--arch NAME` or `--arch FILE.toml` into a
validated `ResNetConfig` (the one backbone config: stem, stages of blocks, exits, head widths).
The presets (docs/training.md has the table):
  resnet-digits  : today's digits ResNet (stem 12, stages 12/32/64, a head after each stage)
  resnet8-ee     : MLPerf Tiny image classification ResNet-8 (stem 16, one residual block per stage
                   at 16/32/64, stride 1/2/2) for 32x32x3, a head after each of its three stages
  dscnn-ee       : MLPerf Tiny keyword-spotting DS-CNN for 49x10x1 features (stem of 64 channels at
                   stride 2, four depthwise-separable blocks of 64), heads after blocks 2 and 4.  The
                   stem is 3x3, not MLPerf's 10x4: the exporter and the C kernels take square kernels.
  mobilenetv1-ee : MobileNetV1-style depthwise-separable network for 32x32 inputs, heads after 3 stages
A TOML file may start from a preset (`preset = "resnet8-ee"`) and override any field:
    preset = "resnet8-ee"
    [backbone]
    stem_width = 16            # stem_kernel (odd), stem_stride (1|2), block ("basic"|"dwsep")
    stages = [{width = 16, blocks = 1, stride = 1}, {width = 32, blocks = 1, stride = 2}]
    [exits]
    after_stages = [0, 1]      # stage indices followed by a head; must end at the last stage
    head_hidden = [32, 0]      # per exit: width of the head's 1x1 ConvBN-ReLU, 0 = pool -> linear
Unknown keys, wrong types and impossible shapes are refused with one line naming the file.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tinyexit.errors import UserError
from tinyexit.models.classifier import ResNetConfig, StageSpec

_S = StageSpec
PRESETS: dict[str, ResNetConfig] = {
    "resnet-digits": ResNetConfig(),
    "resnet8-ee": ResNetConfig(in_channels=3, stem_width=16, stages=(_S(16, 1, 1), _S(32, 1, 2), _S(64, 1, 2)),
                               exits=(0, 1, 2), head_hidden=(32, 0, 0)),
    "dscnn-ee": ResNetConfig(in_channels=1, num_classes=12, stem_width=64, stem_stride=2, block="dwsep",
                             stages=(_S(64, 1, 1), _S(64, 1, 1), _S(64, 1, 1), _S(64, 1, 1)),
                             exits=(1, 3), head_hidden=(0, 0)),
    "mobilenetv1-ee": ResNetConfig(in_channels=3, stem_width=16, block="dwsep",
                                   stages=(_S(32, 1, 1), _S(64, 2, 2), _S(128, 2, 2), _S(256, 1, 2)),
                                   exits=(1, 2, 3), head_hidden=(0, 0, 0)),
}
DEFAULT = "resnet-digits"
_BACKBONE_KEYS = {"stem_width", "stem_kernel", "stem_stride", "block", "stages"}
_EXIT_KEYS = {"after_stages", "head_hidden"}


def resolve_arch(spec: str | None, input_shape: tuple[int, int, int], num_classes: int) -> tuple[ResNetConfig, dict]:
    """(config fitted to the data's channels and classes, provenance {"name", "toml"}) for a preset name
    or a TOML path.  Any input size works: every conv pads k // 2, so each map keeps >= 1 pixel."""
    name = spec or DEFAULT
    toml_text = None
    if name.endswith(".toml"):
        toml_text, cfg = _from_toml(Path(name))
    elif name in PRESETS:
        cfg = PRESETS[name]
    else:
        raise UserError(f"--arch '{name}': choose one of {', '.join(PRESETS)} or pass a .toml file "
                        "(docs/training.md)")
    cfg = replace(cfg, in_channels=int(input_shape[0]), num_classes=int(num_classes))
    return cfg, {"name": name, "toml": toml_text}


def _toml():
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise UserError("--arch FILE.toml needs Python >= 3.11 or 'pip install tomli'") from None
    return tomllib


def _from_toml(path: Path) -> tuple[str, ResNetConfig]:
    tomllib = _toml()
    try:
        text = path.read_text()
        doc = tomllib.loads(text)
    except FileNotFoundError:
        raise UserError(f"{path}: no such arch file; pass a preset name or an existing .toml") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc}); see docs/training.md for the format") from None
    unknown = set(doc) - {"preset", "backbone", "exits"}
    if unknown:
        raise UserError(f"{path}: unknown key(s) {sorted(unknown)}; allowed: preset, [backbone], [exits]")
    base = doc.get("preset", DEFAULT)
    if base not in PRESETS:
        raise UserError(f"{path}: preset '{base}' unknown; choose one of {', '.join(PRESETS)}")
    bb, ex = doc.get("backbone", {}), doc.get("exits", {})
    for table, allowed, what in ((bb, _BACKBONE_KEYS, "backbone"), (ex, _EXIT_KEYS, "exits")):
        if not isinstance(table, dict) or set(table) - allowed:
            bad = sorted(set(table) - allowed) if isinstance(table, dict) else table
            raise UserError(f"{path}: [{what}] has unknown key(s) {bad}; allowed: {', '.join(sorted(allowed))}")
    try:
        fields = {k: v for k, v in bb.items() if k != "stages"}
        for k, v in fields.items():
            if (k == "block") != isinstance(v, str) or isinstance(v, bool):
                raise TypeError(f"{k} = {v!r}")
        if "stages" in bb:
            fields["stages"] = tuple(_stage(s) for s in bb["stages"])
        if "after_stages" in ex:
            fields["exits"] = tuple(_int(v, "after_stages") for v in ex["after_stages"])
        if "head_hidden" in ex:
            fields["head_hidden"] = tuple(_int(v, "head_hidden") for v in ex["head_hidden"])
        cfg = replace(PRESETS[base], **fields)
        if "exits" in fields and "head_hidden" not in fields and len(cfg.head_hidden) != len(cfg.exits):
            cfg = replace(cfg, head_hidden=(0,) * len(cfg.exits))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad value ({exc}); see docs/training.md for the format") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    return text, cfg


def _int(v, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{key} entry {v!r} is not an integer")
    return v


def _stage(s) -> StageSpec:
    if not isinstance(s, dict) or set(s) - {"width", "blocks", "stride"} or "width" not in s:
        raise TypeError(f"stage {s!r}: needs {{width = N, blocks = N, stride = 1|2}}")
    return StageSpec(**{k: _int(v, k) for k, v in s.items()})

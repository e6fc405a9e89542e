"""Frozen configuration of the export and verify stages (recorded in RUN/config.json and beside the artifacts)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tinyexit.errors import UserError

FORMATS = ("onnx", "tflite", "tflm", "c")
MODELS = ("classifier", "denoiser")


def _tuple(values, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    values = tuple(values)
    for v in values:
        if v not in allowed:
            raise UserError(f"{what} '{v}': unknown; choose from {', '.join(allowed)}")
    return values


@dataclass(frozen=True)
class ExportConfig:
    formats: tuple[str, ...] = FORMATS
    models: tuple[str, ...] = ()            # empty: every family the run holds a checkpoint for
    calibration_samples: int = 300          # training images used to calibrate int8 ranges (min-max)
    threshold: float | None = None          # overrides the run's chosen exit threshold in the manifest

    def __post_init__(self):
        object.__setattr__(self, "formats", _tuple(self.formats, FORMATS, "format"))
        object.__setattr__(self, "models", _tuple(self.models, MODELS, "model"))
        if not self.formats:
            raise UserError(f"--formats is empty; choose from {', '.join(FORMATS)}")
        if self.calibration_samples < 8:
            raise UserError(f"calibration_samples {self.calibration_samples}: use at least 8 training images")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold {self.threshold}: must be in [0, 1]")

    def to_dict(self) -> dict:
        return {**asdict(self), "formats": list(self.formats), "models": list(self.models)}

    @classmethod
    def from_dict(cls, d: dict) -> "ExportConfig":
        return cls(**d)


@dataclass(frozen=True)
class VerifyConfig:
    max_drop_points: float = 1.0     # fail when an int8 exit loses more accuracy points than this vs float
    min_agreement: float = 0.99      # fail when int8 top-1 agrees with torch float on fewer samples than this
    models: tuple[str, ...] = ()
    samples: int = 0                 # 0: the whole test split
    threshold: float | None = None   # overrides the manifest's exit threshold for the early-exit figures
    max_bits_per_dim_increase: float = 0.02   # denoiser: int8 bits/dim may exceed float by this fraction

    def __post_init__(self):
        object.__setattr__(self, "models", _tuple(self.models, MODELS, "model"))
        if self.max_drop_points < 0 or not 0 <= self.min_agreement <= 1:
            raise UserError(f"verify thresholds {self.max_drop_points}, {self.min_agreement}: drop must be >= 0 "
                            "points and agreement in [0, 1]")
        if self.samples < 0:
            raise UserError(f"--samples {self.samples}: must be >= 0 (0 = whole test split)")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise UserError(f"--threshold {self.threshold}: must be in [0, 1]")

    def to_dict(self) -> dict:
        return {**asdict(self), "models": list(self.models)}

    @classmethod
    def from_dict(cls, d: dict) -> "VerifyConfig":
        return cls(**d)

"""The denoiser family for export and verify: data, manifest additions, int8 scores and int8 samples.

The exported graph is the network only: input (1, H, W, 2) = the ±1 image y_t and the constant
timestep plane, output the x0-logits (1, H, W, 1) of each exit.  The closed-form mixing into
P(Y_{t-1}=+1 | y_t) and the Bernoulli draw stay in float on the device, with the constants the
manifest's "denoiser" key records (from tinyexit.models.denoiser.device_constants).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyexit.errors import UserError
from tinyexit.rundir import load_config

CALIB_SEED, TEST_SEED, BPD_SEED, SAMPLE_SEED = 11, 12, 13, 14


def _process(cfg):
    """The forward process as a Schedule, rebuilt from the recorded δ values (the one stable field)."""
    from tinyexit.models.diffusion import Schedule

    return Schedule(tuple(cfg.delta))


def load(path: Path):
    from tinyexit.models.train_denoiser import load_denoiser

    return load_denoiser(path)[0]


def _encoded(model, x01: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Network inputs for images at one uniformly drawn step each: (inputs NCHW, x0 ±1, t)."""
    import torch

    from tinyexit.models.diffusion import binarize, sample_xt

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.from_numpy(binarize(x01))
    t = torch.randint(1, model.cfg.T + 1, (len(x0),), generator=gen)
    xt = sample_xt(x0, t, _process(model.cfg), gen)
    with torch.no_grad():
        return model.encode(xt, t).numpy(), x0.numpy(), t.numpy()


def data(run: Path, model, calib_n: int):
    from tinyexit.export.families import FamilyData
    from tinyexit.models.data import load_dataset
    from tinyexit.models.train_denoiser import load_denoiser

    cfg = load_config(run).get("denoiser")
    if not cfg:
        raise UserError(f"{run}/config.json: no 'denoiser' section; re-run 'tinyexit train denoiser --out {run}'")
    splits = load_dataset(cfg.get("dataset", "digits"))
    calib, _, _ = _encoded(model, splits.train.x[:calib_n], CALIB_SEED)
    test_x, test_x0, test_t = _encoded(model, splits.test.x, TEST_SEED)
    _, ckpt = load_denoiser(run / "checkpoints" / "denoiser.pt")
    device = dict(ckpt.get("device") or {})
    residual = bool(getattr(model.cfg, "prior_residual", False))
    device.update({"input": {"channels": ["y_t (+1/-1 image)", "timestep plane (timestep_encoding.values[t-1])"],
                             "layout": "NHWC, channel 1 constant over the image"},
                   "prior_residual": residual,
                   "output": ("network output r per pixel; x0-logit z = r + prior_exit z (marginal_logits[j] + "
                              "y*observation_log_odds[t-1]), in float" if residual else
                              "x0-logits z per pixel") + "; P(x0=+1) = sigmoid(z); mixing in float on the device"})
    return FamilyData(calib, test_x, test_x0, (-1.0, 1.0), {"denoiser": device, "policy": None},
                      test_images=splits.test.x, test_t=test_t)


def _with_prior(model, y, t, z_net):
    """x0-logits from a network output: models trained with `prior_residual` learn a correction that is
    added to the zero-compute prior logits (in float, on the device too); older ones output x0-logits."""
    import torch

    if not getattr(model.cfg, "prior_residual", False):
        return z_net
    with torch.no_grad():
        return model.prior_logits(y, t) + z_net


def _pixel_acc(z: np.ndarray, x0_nhwc: np.ndarray) -> float:
    return float((np.where(z >= 0, 1.0, -1.0) == x0_nhwc).mean())


def score(run: Path, man: dict, chains: dict, model, fam_data, cfg, progress=print) -> dict:
    """Per exit: x0 pixel accuracy on each runtime; full depth: bits/dim float vs int8; int8 samples (PNG)."""
    from tinyexit.export.runtimes import to_nhwc

    n = len(chains["torch_float"].logits[0])
    x0 = to_nhwc(fam_data.test_y[:n])
    base = _prior_nhwc(model, fam_data, n)
    chains = {name: [z + base for z in c.logits] for name, c in chains.items()}
    ref = chains["torch_float"]
    int8_names = [c for c in ("ort_int8", "litert_int8", "tflm_int8") if c in chains]
    per_exit, failures = [], []
    for k in range(len(ref)):
        sign = ref[k] >= 0
        row = {"exit": k, "metric": "x0 pixel accuracy at a random step", "accuracy_float": _pixel_acc(ref[k], x0)}
        if "ort_float" in chains:
            row["accuracy_float_ort"] = _pixel_acc(chains["ort_float"][k], x0)
        for name in int8_names:
            short = name.replace("_int8", "")
            row[f"accuracy_int8_{short}"] = _pixel_acc(chains[name][k], x0)
            row[f"agreement_int8_{short}"] = float(((chains[name][k] >= 0) == sign).mean())
        row["agreement_int8"] = min(row[f"agreement_int8_{c.replace('_int8', '')}"] for c in int8_names)
        row["max_drop_points"] = 100 * max(row["accuracy_float"] - row[f"accuracy_int8_{c.replace('_int8', '')}"]
                                           for c in int8_names)
        if row["max_drop_points"] > cfg.max_drop_points:
            failures.append(f"exit {k}: int8 x0 pixel accuracy drops {row['max_drop_points']:.2f} points")
        per_exit.append(row)
    model_dir = run / "export" / "denoiser"
    images = len(fam_data.test_images[:cfg.samples or None])
    progress(f"verify: denoiser bits/dim, {images} test images x {model.cfg.T} steps, torch float vs LiteRT int8")
    bpd = bits_per_dim(model, man, model_dir, fam_data.test_images[:cfg.samples or None])
    if bpd["bits_per_dim_int8"] > bpd["bits_per_dim_float"] * (1 + cfg.max_bits_per_dim_increase):
        failures.append(f"bits/dim int8 {bpd['bits_per_dim_int8']:.4f} exceeds float {bpd['bits_per_dim_float']:.4f}"
                        f" by more than {100 * cfg.max_bits_per_dim_increase:g} %")
    progress("verify: denoiser: sampling 64 digits with the int8 network")
    png = write_int8_samples(model, man, model_dir)
    return {"per_exit": per_exit, **bpd, "samples_png": png, "failures": failures, "passed": not failures}


def _prior_nhwc(model, fam_data, n: int) -> np.ndarray:
    """The float prior logits the device adds to every exit's output for the test inputs (0 if none)."""
    import torch

    from tinyexit.export.runtimes import to_nhwc

    x = torch.from_numpy(fam_data.test_x[:n])
    t = torch.from_numpy(fam_data.test_t[:n]).long()
    return to_nhwc(_with_prior(model, x[:, :1], t, torch.zeros_like(x[:, :1])).numpy())


def _litert_full_depth(man: dict, model_dir: Path):
    """x0-logits of the last exit from the multi-signature int8 file, for a batch of NCHW float inputs."""
    from tinyexit.export import runtimes as rt

    interp = rt.litert_interpreter((model_dir / man["files"]["tflite"]["path"]).read_bytes(), "denoiser.int8.tflite")
    runners = [interp.get_signature_runner(s["signature"]) for s in man["segments"]]

    def run(x_nchw: np.ndarray) -> np.ndarray:
        return rt.litert_chain_with(runners, man, rt.to_nhwc(x_nchw)).logits[-1]
    return run


def bits_per_dim(model, man: dict, model_dir: Path, images01: np.ndarray) -> dict:
    """Negative ELBO in bits/dim at full depth, float torch vs LiteRT int8, on identical x_t draws (one per t)."""
    import torch

    from tinyexit.models.diffusion import LN2, binarize, kl_terms, posterior_table, prior_term, sample_xt

    cfg = model.cfg
    table = torch.tensor(posterior_table(_process(cfg)), dtype=torch.float32)
    x0 = torch.from_numpy(binarize(images01))
    m = x0[0].numel()
    gen = torch.Generator().manual_seed(BPD_SEED)
    run_int8 = _litert_full_depth(man, model_dir)
    total = {"float": 0.0, "int8": 0.0}
    for t in range(1, cfg.T + 1):
        tt = torch.full((len(x0),), t, dtype=torch.long)
        xt = sample_xt(x0, tt, _process(cfg), gen)
        inp = model.encode(xt, tt)
        with torch.no_grad():
            z_float = _with_prior(model, xt, tt, model(inp)[-1])
        z_int8 = _with_prior(model, xt, tt, torch.from_numpy(np.transpose(run_int8(inp.numpy()), (0, 3, 1, 2)).copy()))
        total["float"] += float(kl_terms(z_float, x0, xt, tt, table).mean())
        total["int8"] += float(kl_terms(z_int8, x0, xt, tt, table).mean())
    lt = prior_term(_process(cfg), m)
    f, q = ((lt + total[k]) / (m * LN2) for k in ("float", "int8"))
    return {"bits_per_dim_float": f, "bits_per_dim_int8": q, "bits_per_dim_increase": q / f - 1,
            "bits_per_dim_runtime": "litert_int8", "bits_per_dim_images": int(len(x0)),
            "bits_per_dim_draws": "one x_t per image and step, shared by float and int8"}


def write_int8_samples(model, man: dict, model_dir: Path, n: int = 64) -> str:
    """Generate n digits with the int8 network (full depth), float mixing as on a device; save a PNG grid."""
    import torch

    from tinyexit.models.diffusion import posterior_table, reverse_step

    cfg = model.cfg
    table = torch.tensor(posterior_table(_process(cfg)), dtype=torch.float32)
    gen = torch.Generator().manual_seed(SAMPLE_SEED)
    run_int8 = _litert_full_depth(man, model_dir)
    y = torch.where(torch.rand((n, 1, *cfg.in_hw), generator=gen) < 0.5, 1.0, -1.0)
    for t in range(cfg.T, 0, -1):
        tt = torch.full((n,), t, dtype=torch.long)
        z = np.transpose(run_int8(model.encode(y, tt).numpy()), (0, 3, 1, 2)).copy()
        y = reverse_step(_with_prior(model, y, tt, torch.from_numpy(z)), y, t, table, gen)
    path = model_dir / "samples_int8.png"
    _save_grid(y.numpy()[:, 0], path)
    return path.name


def _save_grid(images: np.ndarray, path: Path, cols: int = 8) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = (len(images) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.8, rows * 0.8))
    for ax, img in zip(np.ravel(axes), list(images) + [None] * (rows * cols - len(images))):
        ax.axis("off")
        if img is not None:
            ax.imshow(img > 0, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    fig.suptitle("denoiser samples, int8 network (LiteRT), float mixing", fontsize=8)
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)

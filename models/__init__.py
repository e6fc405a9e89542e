"""Models: data loading, the early-exit classifier, the binary denoiser, training.

Entry points (imported lazily; this package must import without torch so a device
agent can use `tinyexit.exit_policy`):
    tinyexit.models.data.load_dataset(name, data_dir) -> Splits
    tinyexit.models.train_run.train_classifiers(splits, config, run_dir)
    tinyexit.models.train_denoiser.train_denoiser(splits, config, run_dir)
    tinyexit.models.backbones.resolve_arch(name_or_toml, input_shape, num_classes) -> (ResNetConfig, origin)
    tinyexit.models.own_segments.train_own_segments(stages, heads, out, dataset=...)  (your own nn.Modules)
Data checks and the split rule for user data: models/data_check.py; image folders: models/data_folder.py.
Training chooses the operating point on val (models/threshold.py; the denoiser's exit
schedule in models/denoiser.py) and saves it with the checkpoint and in config.json;
export copies it into the bundle.  Worker processes report epochs to one parent reporter
(models/progress.py): one bar in a terminal, a line per milestone in a log.
"""

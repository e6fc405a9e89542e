"""Models: data loading, the early-exit classifier, the binary denoiser, training.

Entry points (imported lazily; this package must import without torch so a device
agent can use `tinyexit.exit_policy`):
    tinyexit.models.data.load_dataset(name, data_dir) -> Splits
    tinyexit.models.train_run.train_classifiers(splits, config, run_dir)
"""

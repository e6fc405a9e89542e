"""`tinyexit demo`: registered here so the pipeline stays a thin composition."""


def register(sub) -> None:
    pass

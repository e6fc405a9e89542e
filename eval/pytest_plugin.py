"""pytest plugin: regression checks on a tinyexit run from a user's test suite."""

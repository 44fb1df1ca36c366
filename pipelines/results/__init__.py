"""The study's results: the metric tables and their file formats, run-specific sidecars, data for
``dvc plots``, the check against a committed reference, and carrying an older study's lock over."""

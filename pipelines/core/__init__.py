"""What every stage stands on: params (the one reader and what a stage may read), errors, atomic files,
checkpoint files, the study's folder layout, process limits and threads."""

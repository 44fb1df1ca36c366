"""One training job (stage x backbone x prior x T x stage combo x seed) and the study's training stages."""

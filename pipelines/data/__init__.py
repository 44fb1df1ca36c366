"""Datasets: reading paired image folders and image files, and making the datasets (the synthetic
motion-blur set, the real GoPro crops, the fetched real sets). Beside the code: the committed assets
(``gopro_real_crops/``, ``levin09_kernels.npz``)."""

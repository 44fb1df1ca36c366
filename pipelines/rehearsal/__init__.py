"""Rehearsal of the paper profile without the real datasets (issue 24).

:mod:`pipelines.rehearsal.archives` writes miniature copies of the official GoPro, HIDE and RealBlur
archives (same layout and file names, a few pairs made from the photos bundled in installed packages);
:mod:`pipelines.rehearsal.server` serves a folder of them on 127.0.0.1 with HTTP Range support, so that
``blurdm-bench fetch`` downloads, verifies, unpacks and normalises them exactly as it would the real ones.
Nothing here contacts any host but 127.0.0.1.
"""

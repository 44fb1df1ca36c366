"""Fetching the real datasets (GoPro, HIDE, RealBlur-J/R), split by job: :mod:`.download`, :mod:`.verify`
(checksums), :mod:`.unpack` (safe extraction), :mod:`.layouts` (normalising), and :mod:`.dataset`, which runs
them for one dataset (``blurdm-bench fetch``)."""

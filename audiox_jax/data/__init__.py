"""Data: synthetic and rendered audio, the log-mel cache, and batches for training.

Modules, in the order data flows:

* ``synthetic`` / ``render``: audio made in code (toy labelled data set) or by Debian tools.
* ``clips``: cutting a waveform into fixed-shape items. ``labels``: per-file labels.
* ``prepare``: a folder of audio -> a sharded log-mel cache (layout in ``cache``).
* ``cache``: the cache's layout, ``Manifest`` and ``load_cache``.
* ``iterator``: deterministic, checkpointable batches and a train/val split.

Nothing is imported here, so ``render`` and ``synthetic`` stay free of JAX.
"""

"""Training: state, step, EMA, device layouts, checkpoints, logs and the loop.

Modules, in the order a run uses them:

* ``data``: the cache or synthetic set, labels resolved against the model, model batches.
* ``state``: ``TrainState``, the optimiser (AdamW + schedule + clipping + MultiSteps), random streams.
* ``ema``: the parameter EMA as an optax-style ``(init, update)`` pair.
* ``sharding``: the ``data`` mesh, replicated / FSDP state shardings, batches on devices.
* ``step``: the per-example loss and the train step under jit+sharding or pmap.
* ``checkpoint``: the Orbax CheckpointManager and ``export_for_generation``.
* ``metrics``: metrics.jsonl, TensorBoard scalars (tensorboardX), the progress bar (tqdm).
* ``loop``: ``train(config, workdir)``, top to bottom.

Nothing is imported here; ``audiox_jax.modelio`` loads exported models without this package.
"""

"""What every method is built on, apart from the methods themselves.

The aligner side (no Lightning; importing it is cheap):

- ``base.py``: the :class:`~align.methods.framework.base.Aligner` interface, the inputs it declares,
  input checks, save and load.
- ``capabilities.py``: what an aligner can do beyond fitting and embedding (``can_caption``,
  ``quantizes_images``, ...), declared on its class and checked when it is registered.
- ``hparams.py``: how an aligner declares its hyper-parameters (:class:`HParams`, ``param``).
- ``trained.py``: the base of the aligners trained by gradient descent (:class:`TrainedAligner`).
- ``cores.py``: a trained aligner's core class as the string Lightning checkpoints store, and back.
- ``distributed.py``: rows gathered across data-parallel processes (torch only; cores import it).

The training side, one concern a file; each imports Lightning, so the trained base imports them
inside the methods that train or load (``import align.methods`` never imports Lightning):

- ``seeding.py``: one seed per fit, and the RNG states a checkpoint keeps.
- ``trainer.py``: the Trainer with the project's defaults, its curve loggers, quiet start-up.
- ``data.py``: the train/validation split, batch sizes and the seeded (and sharded) sampler.
- ``module.py``: :class:`CoreModule`, the one Lightning module: AdamW and its schedule, loss history.
- ``checkpoints.py``: ``last.ckpt`` after every epoch, the best epoch's weights, a fit's fingerprint
  and RNG states, atomic writes and ``weights_only`` reads.

``align.methods.base``, ``align.methods.hparams``, ``align.methods.trained`` and
``align.methods.lightning_utils`` re-export these under the paths plugins and scripts import.
"""

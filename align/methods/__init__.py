"""Alignment methods; importing this package registers them in ``ALIGNERS``.

One subpackage per method of the papers (``asif/``, ``vlap/``, ``lqae/``, ``codebook_vlp/``), each
holding its aligner and its own parts; the baselines are single files (``ridge.py``,
``procrustes.py``, ``contrastive.py``); ``base.py`` is the interface every aligner implements,
``hparams.py`` how each declares its hyper-parameters, and ``trained.py`` (with ``lightning_utils.py``)
the base of the aligners trained by gradient descent: contrastive, VLAP, LQAE and Codebook-VLP.
"""

import align.methods.asif  # noqa: F401
import align.methods.codebook_vlp  # noqa: F401
import align.methods.contrastive  # noqa: F401
import align.methods.lqae  # noqa: F401
import align.methods.procrustes  # noqa: F401
import align.methods.ridge  # noqa: F401
import align.methods.vlap  # noqa: F401

"""Alignment methods; importing this package registers them in ``ALIGNERS``.

One subpackage per method of the papers (``asif/``, ``vlap/``, ``lqae/``, ``codebook_vlp/``), each
holding its aligner and its own parts; the baselines are single files (``ridge.py``,
``procrustes.py``, ``contrastive.py``), and so is the pretrained-CLIP reference row
(``clip.py``). What they are built on is in ``framework/``: the interface
every aligner implements and the capabilities it declares, how it declares its hyper-parameters, and
the base of the aligners trained by gradient descent (contrastive, VLAP, LQAE and Codebook-VLP) with
its Lightning parts. ``base.py``, ``hparams.py``, ``trained.py`` and ``lightning_utils.py`` here only
re-export parts of it under their earlier import paths.
"""

import align.methods.asif  # noqa: F401
import align.methods.clip  # noqa: F401
import align.methods.codebook_vlp  # noqa: F401
import align.methods.contrastive  # noqa: F401
import align.methods.lqae  # noqa: F401
import align.methods.procrustes  # noqa: F401
import align.methods.ridge  # noqa: F401
import align.methods.vlap  # noqa: F401

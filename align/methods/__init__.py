"""Alignment methods, one file each; importing this package registers them in ``ALIGNERS``."""

import align.methods.asif  # noqa: F401
import align.methods.codebook_vlp  # noqa: F401
import align.methods.contrastive  # noqa: F401
import align.methods.lqae  # noqa: F401
import align.methods.procrustes  # noqa: F401
import align.methods.ridge  # noqa: F401
import align.methods.vlap  # noqa: F401

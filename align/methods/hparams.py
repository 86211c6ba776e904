"""Hyper-parameter declarations, under the import path plugins use (README "Adding an aligner").

They live in :mod:`align.methods.framework.hparams`; this module re-exports them.
"""

from align.methods.framework.hparams import HParams, Rule, Spec, param, specs

__all__ = ["HParams", "Rule", "Spec", "param", "specs"]

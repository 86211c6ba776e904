"""The feature cache: embed a dataset split once, reuse it for every aligner and task."""

from align.features.cache import FeatureCache, FeatureKey, image_features, text_features

__all__ = ["FeatureCache", "FeatureKey", "image_features", "text_features"]

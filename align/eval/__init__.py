"""Evaluation tasks scored the way CLIP_benchmark scores them.

``metrics`` (recall@k, acc1/acc5/mean_per_class_recall, seed aggregation), ``zeroshot`` (prompts,
mean/max template reducers), ``retrieval``, ``linear_probe`` (logistic regression, C on validation)
and ``fewshot`` (k-shot nearest class mean).
"""

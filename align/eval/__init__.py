"""Evaluation tasks scored the way CLIP_benchmark scores them.

``metrics`` (recall@k, acc1/acc5/mean_per_class_recall, seed aggregation), ``zeroshot`` (prompts,
mean/max template reducers), ``retrieval``, ``linear_probe`` (logistic regression, C on validation),
``fewshot`` (k-shot nearest class mean), ``arithmetic`` (image - word + word, searched among the other
images) and ``questions`` (one-word answers chosen by question-answer prompts).
"""

"""The benchmark runner: a matrix of encoders x aligners x datasets x tasks x seeds, and its report."""

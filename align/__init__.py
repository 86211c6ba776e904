"""align: frozen vision encoders aligned with frozen language models, and the benchmark that scores them.

``__version__`` is what ``align --version`` prints. It is written here as well as in pyproject.toml so an
editable install whose metadata is stale still names the right release; tests/unit/test_release.py fails
when the two, CITATION.cff or CHANGELOG.md disagree.
"""

__version__ = "0.2.0"

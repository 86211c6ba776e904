"""Report: the leaderboard with its intervals (Markdown, CSV, HTML), sweep choices and training curves."""

"""Leaderboard: a summary frame (the published CSV), a table model built from it, and
renderers (Markdown, LaTeX, CSV, HTML) that only know the table model."""

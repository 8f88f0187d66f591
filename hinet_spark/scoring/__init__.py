"""Candidates -> scores (score_candidates), and how a day's scores did against its labels (evaluate_scores)."""

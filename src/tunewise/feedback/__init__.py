"""Feedback: the store of what testers say, active learning (select) and refinement (refine)."""

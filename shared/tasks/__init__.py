"""Synthetic task families with worked solutions and graded difficulty (torch-free)."""

"""Evaluation: metrics per task, computed in torch so they cost little every epoch."""

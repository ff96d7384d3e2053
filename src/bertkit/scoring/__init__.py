"""Scores from predictions and gold answers: classification and regression metrics, entity F1 (conlleval),
and SQuAD's exact match and F1. Below the tasks, which accumulate them, and the `score` command."""

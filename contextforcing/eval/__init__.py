"""Evaluation: backbone consistency curves, a dynamic-degree proxy, and world ground-truth metrics."""

__all__: list[str] = []

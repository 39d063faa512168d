"""Data: the synthetic world (episodes, rendering, ground truth) and its prompt encoder."""

__all__: list[str] = []

"""Overlapping windows over a sequence too long for the model (long sentences to tag, passages to search)."""


def windows(n_tokens: int, size: int, stride: int) -> list[tuple[int, int]]:
    """[start, end) token ranges of at most `size` covering `n_tokens`, consecutive ones sharing `stride`."""
    spans, start = [], 0
    while True:
        end = min(start + size, n_tokens)
        spans.append((start, end))
        if end == n_tokens:
            return spans
        start = end - stride

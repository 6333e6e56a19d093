"""Dataset plugins. Each registers with ``@register_dataset`` and returns Pairs per split."""

"""Method plugins, one module per method family. Each registers with ``@register_method``."""

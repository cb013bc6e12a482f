"""skulab's spiders: ``nike``, ``nike_launch`` and ``shopify``."""

"""skulab's crawlers: sneaker pictures and their page metadata into the catalogue."""

"""skulab's catalogue: sneaker models, SKUs, images and their labels, in one data folder."""

from db.catalogue import Catalogue, open_catalogue

__all__ = ["Catalogue", "open_catalogue"]

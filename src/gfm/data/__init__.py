"""The data contract: canonical tables, validation, loaders and splits."""

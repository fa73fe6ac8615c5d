"""The logic of palliwatch: the pure indicator core, validation and the database sink."""

"""Pictures of a run: interpolations, traversals and image grids as PNG, JSON and TensorBoard."""

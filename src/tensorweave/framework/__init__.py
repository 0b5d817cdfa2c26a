"""Graph-building core: dtypes, static shapes, Graph/Operation/Tensor, the op registry, errors."""

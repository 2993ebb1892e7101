"""Use cases of the messaging pipeline, one module per use case."""

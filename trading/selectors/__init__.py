"""Read queries of the MM engine, one module per area; every selector is scoped to a client."""

"""Model registries: turn a URI into an immutable identity, gate it, record outcomes."""

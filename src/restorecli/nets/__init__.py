"""Network architectures, one module per official architecture, with the official key names."""

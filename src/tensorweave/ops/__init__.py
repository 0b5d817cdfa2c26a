"""Op builders, one module per family. Each declares its op types and adds ops to the graph."""

"""TracingPolicy files: schema, compile to BPF map values, load, watch."""

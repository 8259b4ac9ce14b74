"""The router environment (Router-R1): multi-round routing among a pool of models."""

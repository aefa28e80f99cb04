"""Pasteur's own HTTPS: the TLS listener and ACME certificates."""

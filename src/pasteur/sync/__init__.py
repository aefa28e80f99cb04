"""Synchronisation with a Git remote: the push loop, integration, the network worker."""

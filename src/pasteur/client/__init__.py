"""The terminal client: `pasteur paste` and `pasteur get`."""

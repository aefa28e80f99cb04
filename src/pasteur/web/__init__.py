"""The web application: pages, the front door, caches, uploads, the sweeper.

Imports run downward only: ``web`` reads the store and the formats, never
``sync`` or ``tls``; what it needs of sync reaches it as callables.
"""

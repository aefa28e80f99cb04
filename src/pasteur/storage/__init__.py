"""Pastes in a Git repository, one concern a module, imports running down:
store (the facade) -> intake (journal thread) -> writer (group commit) ->
committer, batch, erasure, maintenance -> repository -> packs -> treecache ->
objects; journal, layout, durable and errors are leaves."""

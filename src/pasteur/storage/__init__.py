"""Pastes in a Git repository: the journal, the writer, the committer and the
pieces of the repository they share (imports run down: store -> writer ->
batch -> repository -> packs -> objects)."""

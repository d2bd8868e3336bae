"""The content-addressed payload store: pack files and their index."""

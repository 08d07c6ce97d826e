"""Small helpers shared by every layer: processes, files, text, time."""

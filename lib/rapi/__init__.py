"""rapi."""

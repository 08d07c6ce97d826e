"""cmdlib."""

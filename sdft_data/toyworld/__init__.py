"""A toy world where SDFT's effect shows on a CPU in minutes (see world.py for its design)."""

"""pytest plugin exposing the ICE emulator fixtures (filled in by the emulator issue)."""

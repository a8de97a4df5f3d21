"""Media between the SIP and Matrix sides (frame pump, resampling, mixing)."""

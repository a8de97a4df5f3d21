"""The pure core: call states and outcomes, routing rules. No I/O here."""

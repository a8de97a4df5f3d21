"""End-to-end encryption for the bridge's devices (the bot and the ghosts)."""

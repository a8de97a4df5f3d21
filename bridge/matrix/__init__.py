"""The Matrix side: appservice glue, inbox, bot, and (later) MatrixRTC signalling."""

"""The SIP side, run inside call workers: pjsua2 endpoint, calls, message inspection."""

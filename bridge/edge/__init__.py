"""The SIP edge (Kamailio) in front of the call workers: its files and its control."""

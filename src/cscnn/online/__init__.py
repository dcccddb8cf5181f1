"""The online side of the loop: simulated users, live-like traffic through the ranking service, experiments."""

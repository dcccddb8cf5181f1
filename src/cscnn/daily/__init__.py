"""The daily loop: one function per step (`steps`) and the day status every orchestrator reads (`status`)."""

"""Training recipes for the engine's model (`talkover train ...`)."""

"""The speaker: the one playback queue of the user, a host of its own in the server's interpreter."""

"""The chatterbox family (Chatterbox, Chatterbox Turbo): runs in the chatterbox venv's engine host."""

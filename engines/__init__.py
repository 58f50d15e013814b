"""Speech engines and the processes that host them."""

"""The engine host runtime: the process, its socket, the synthesis service and what every family shares."""

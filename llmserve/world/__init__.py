"""The outside world every chapter shares: the mode (live cluster or offline, GPU or CPU),
the cluster connection, the port-forward, and manifest rendering and validation."""

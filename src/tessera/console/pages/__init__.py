"""Console pages of the kernel: sign-in, home, search, profile and administration."""
